"""DeepLabV3(+) models: `build_model(config)`, ImageNet weights, summaries."""
from mobile_seg.model.deeplab import build_model

__all__ = ["build_model"]
