"""DeepLabV3+ decoder (Chen et al. 2018): refine the ASPP output with stride-4 features.

Low-level features -> 1x1 conv to 48 channels -> BN -> ReLU; the ASPP output is
upsampled (bilinear UpSampling2D) to their size, concatenated, and refined by two 3x3
separable convs of 256 channels.
"""
from __future__ import annotations

from mobile_seg.config import ModelConfig
from mobile_seg.model.blocks import conv_bn, separable_conv_bn, upsample_to, L

LOW_LEVEL_CHANNELS = 48
DECODER_CHANNELS = 256


def decoder(encoder_out, low_level, cfg: ModelConfig, channels: int = DECODER_CHANNELS):
    """Return the decoder output at the low-level features' resolution (stride 4)."""
    low = conv_bn(low_level, LOW_LEVEL_CHANNELS, 1, "feature_projection0", cfg)
    x = upsample_to(encoder_out, (int(low.shape[1]), int(low.shape[2])), "decoder_upsample")
    x = L.Concatenate(name="decoder_concat")([x, low])
    x = separable_conv_bn(x, channels, "decoder_conv0", cfg)
    return separable_conv_bn(x, channels, "decoder_conv1", cfg)
