"""Feature containers, the content-keyed on-disk feature cache, and extraction (:mod:`mmsent.features.extract`)."""

from mmsent.features.cache import FeatureCache
from mmsent.features.featureset import FeatureSet, ModalityFeatures

__all__ = ["FeatureCache", "FeatureSet", "ModalityFeatures"]
