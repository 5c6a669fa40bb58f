"""DeepLab's aligned Xception-65 encoder (Chen et al. 2018, sec. 3.2), one flat graph.

Entry flow (2 convs + 3 blocks), middle flow (16 blocks), exit flow (2 blocks). As in
DeepLab: every max-pool is replaced by a strided separable conv, and BN + ReLU follow
each 3x3 depthwise conv. Modules are pre-activation (ReLU before each separable conv)
except the last exit block, which activates after each conv. Strides beyond
`output_stride` become dilations. There are no pretrained weights offline: it trains
from scratch.
"""
from __future__ import annotations

from mobile_seg.config import ModelConfig
from mobile_seg.model.blocks import activation, conv_bn, separable_conv_bn, stride_or_dilate, L

# (flow, block, depths of the 3 separable convs, skip: conv|sum|none, stride, repeats)
FLOWS = (
    ("entry_flow", 1, (128, 128, 128), "conv", 2, 1),
    ("entry_flow", 2, (256, 256, 256), "conv", 2, 1),
    ("entry_flow", 3, (728, 728, 728), "conv", 2, 1),
    ("middle_flow", 1, (728, 728, 728), "sum", 1, 16),
    ("exit_flow", 1, (728, 1024, 1024), "conv", 2, 1),
    ("exit_flow", 2, (1536, 1536, 2048), "none", 1, 1),
)
# DeepLab's decoder input for Xception: entry_flow/block2/unit_1/.../separable_conv2_pointwise.
LOW_LEVEL_LAYER = "entry_flow_block2_unit_1_separable_conv2_pointwise_BatchNorm"
LAYER_PREFIXES = ("entry_flow", "middle_flow", "exit_flow")


def _xception_module(x, name: str, depths, skip: str, stride: int, rate: int, cfg: ModelConfig,
                     activate_after: bool):
    """Three separable convs (the last one strided) plus a conv/identity/no shortcut.

    Returns (output, stride-4 candidate = output of the 2nd separable conv).
    """
    inputs = x
    second = None
    for i, depth in enumerate(depths):
        conv_name = f"{name}_separable_conv{i + 1}"
        if not activate_after:
            x = activation(x, f"{conv_name}_preact")
        x = separable_conv_bn(x, depth, conv_name, cfg, stride=stride if i == 2 else 1, rate=rate,
                              relu_out=activate_after)
        if i == 1:
            second = x
    if skip == "conv":
        shortcut = conv_bn(inputs, depths[-1], 1, f"{name}_shortcut", cfg, stride=stride, relu=False)
        x = L.Add(name=f"{name}_add")([x, shortcut])
    elif skip == "sum":
        x = L.Add(name=f"{name}_add")([x, inputs])
    return x, second


def xception65(inputs, cfg: ModelConfig) -> dict:
    """Build the encoder on `inputs`.

    Returns {'features', 'low_level' (stride 4), 'output_stride'} like `mobilenet_v2`.
    """
    x = conv_bn(inputs, 32, 3, "entry_flow_conv1_1", cfg, stride=2)
    x = conv_bn(x, 64, 3, "entry_flow_conv1_2", cfg)
    current_stride, rate = 2, 1
    low_level = None
    for flow, block, depths, skip, stride, repeats in FLOWS:
        for unit in range(1, repeats + 1):
            unit_stride, unit_rate, current_stride, rate = stride_or_dilate(
                stride, current_stride, rate, cfg.output_stride)
            name = f"{flow}_block{block}_unit_{unit}"
            activate_after = flow == "exit_flow" and block == 2
            x, second = _xception_module(x, name, depths, skip, unit_stride, unit_rate, cfg, activate_after)
            if f"{name}_separable_conv2_pointwise_BatchNorm" == LOW_LEVEL_LAYER:
                low_level = second
    return {"features": x, "low_level": low_level, "output_stride": current_stride}
