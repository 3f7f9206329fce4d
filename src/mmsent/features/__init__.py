"""Feature containers and the content-keyed on-disk feature cache."""

from mmsent.features.featureset import FeatureSet, ModalityFeatures

__all__ = ["FeatureSet", "ModalityFeatures"]
