"""MobileNetV2 encoder (Sandler et al. 2018) for DeepLab, built on one input tensor.

Layers carry TF-slim names (`Conv`, `expanded_conv_N_expand`, `..._depthwise`,
`..._project`, each with `_BatchNorm`) so that the ImageNet npz maps onto them by name.
As in DeepLab, the encoder stops at the 320-channel output of the last inverted-residual
block (`expanded_conv_16`, slim's `layer_18`); the 1280-channel `Conv_1` is not used.
Strides beyond `output_stride` become dilations (slim's `mobilenet_base` rule).
"""
from __future__ import annotations

from mobile_seg.config import ModelConfig
from mobile_seg.model.blocks import conv_bn, depthwise_bn, stride_or_dilate, L

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
# DeepLab's decoder input for MobileNetV2: `layer_4/depthwise_output`, stride 4.
LOW_LEVEL_LAYER = "expanded_conv_2_depthwise_relu"
LAYER_PREFIXES = ("Conv", "expanded_conv")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor`, never dropping below 90% (slim/Keras rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def block_name(index: int) -> str:
    return "expanded_conv" if index == 0 else f"expanded_conv_{index}"


def _inverted_residual(x, index: int, expansion: int, out_channels: int, stride: int, rate: int,
                       cfg: ModelConfig):
    """One block: [1x1 expand -> BN -> ReLU6] -> 3x3 depthwise -> BN -> ReLU6 -> 1x1 project -> BN [+ x].

    Returns (block output, depthwise activation) -- the latter feeds the decoder.
    """
    name = block_name(index)
    in_channels = int(x.shape[-1])
    inputs = x
    if expansion != 1:
        x = conv_bn(x, in_channels * expansion, 1, f"{name}_expand", cfg, relu6=True)
    depthwise = depthwise_bn(x, f"{name}_depthwise", cfg, stride=stride, rate=rate, relu6=True)
    x = conv_bn(depthwise, out_channels, 1, f"{name}_project", cfg, relu=False)
    if stride == 1 and in_channels == out_channels:
        x = L.Add(name=f"{name}_add")([inputs, x])
    return x, depthwise


def mobilenet_v2(inputs, cfg: ModelConfig) -> dict:
    """Build the encoder on `inputs`.

    Returns {'features': stride-`output_stride` tensor, 'low_level': stride-4 tensor,
    'output_stride': the stride reached}.
    """
    alpha = cfg.alpha
    x = conv_bn(inputs, make_divisible(STEM_CHANNELS * alpha), 3, "Conv", cfg, stride=2, relu6=True)
    current_stride, rate = 2, 1
    low_level = None
    index = 0
    for t, c, n, s in BLOCKS:
        out_channels = make_divisible(c * alpha)
        for i in range(n):
            stride = s if i == 0 else 1
            layer_stride, layer_rate, current_stride, rate = stride_or_dilate(
                stride, current_stride, rate, cfg.output_stride)
            x, depthwise = _inverted_residual(x, index, t, out_channels, layer_stride, layer_rate, cfg)
            if f"{block_name(index)}_depthwise_relu" == LOW_LEVEL_LAYER:
                low_level = depthwise
            index += 1
    return {"features": x, "low_level": low_level, "output_stride": current_stride}
