"""Data layer: lab-format reading with validation, text decoding and cleaning, safe image loading, splits."""

from mmsent.data.images import ImageLoadError, ImageTooLargeError, check_image, load_image, load_image_bytes
from mmsent.data.lab_format import DataValidationError, load_lab_dataset
from mmsent.data.records import DataIssue, Example, LabDataset, LoadReport
from mmsent.data.sample import load_sample_dataset, sample_dataset_path
from mmsent.data.splits import Split, SplitError, check_split, kfold_splits, load_split, make_split, save_split
from mmsent.data.text import TextCleaner, TextDecodeError, decode_text

__all__ = [
    "DataIssue", "DataValidationError", "Example", "ImageLoadError", "ImageTooLargeError", "LabDataset", "LoadReport",
    "Split", "SplitError", "TextCleaner", "TextDecodeError", "check_image", "check_split", "decode_text",
    "kfold_splits", "load_image", "load_image_bytes", "load_lab_dataset", "load_sample_dataset", "load_split",
    "make_split", "sample_dataset_path", "save_split",
]
