"""Feature containers and the content-keyed on-disk feature cache."""

from mmsent.features.cache import FeatureCache
from mmsent.features.extract import extract_features
from mmsent.features.featureset import FeatureSet, ModalityFeatures

__all__ = ["FeatureCache", "FeatureSet", "ModalityFeatures", "extract_features"]
