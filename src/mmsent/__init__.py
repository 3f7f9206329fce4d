"""mmsent: multimodal (image + text) sentiment analysis.

The library is usable without the CLI::

    from mmsent import load_lab_dataset, create_image_encoder, create_text_encoder, create_fusion_model
"""

from mmsent.labels import LABELS, label_to_index, index_to_label

__version__ = "0.1.0"

__all__ = ["LABELS", "label_to_index", "index_to_label", "__version__"]
