"""Atrous Spatial Pyramid Pooling (DeepLabV3, Chen et al. 2017), quantization-friendly.

Branches, in DeepLab's concat order: image pooling (global average -> 1x1 conv -> BN ->
ReLU -> broadcast back by nearest upsampling of the 1x1 map), a 1x1 conv, and one
separable 3x3 conv per atrous rate; then concat -> 1x1 projection -> BN -> ReLU -> dropout.
No Lambda or tf.image.resize: the feature map size is static (fixed input size).
"""
from __future__ import annotations

from mobile_seg.config import ModelConfig
from mobile_seg.model.blocks import conv_bn, separable_conv_bn, L

ASPP_CHANNELS = 256
DROPOUT = 0.1


def aspp(features, cfg: ModelConfig, channels: int = ASPP_CHANNELS):
    """ASPP head on `features` (stride `output_stride`); returns a `channels`-deep tensor."""
    h, w = int(features.shape[1]), int(features.shape[2])
    pool = L.GlobalAveragePooling2D(keepdims=True, name="image_pooling_gap")(features)
    pool = conv_bn(pool, channels, 1, "image_pooling", cfg)
    pool = L.UpSampling2D(size=(h, w), interpolation="nearest", name="image_pooling_upsample")(pool)
    branches = [pool, conv_bn(features, channels, 1, "aspp0", cfg)]
    for i, rate in enumerate(cfg.resolved_atrous_rates, start=1):
        branches.append(separable_conv_bn(features, channels, f"aspp{i}", cfg, rate=rate))
    x = L.Concatenate(name="aspp_concat")(branches)
    x = conv_bn(x, channels, 1, "concat_projection", cfg)
    return L.Dropout(DROPOUT, name="concat_projection_dropout")(x)
