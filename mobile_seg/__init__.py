"""mobile-seg: person segmentation from data to phone."""
import os

# tfmot only works with Keras 2: every TF import in this package must see this first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
