"""DeepLabV3 / DeepLabV3+ as ONE flat functional tf_keras model (quantizable by tfmot).

Backbone, ASPP and decoder are functions called on the same input tensor: no nested
sub-models (tfmot's quantize_model cannot wrap those). Input: normalised RGB
`[B, H, W, 3]` (see ModelConfig.input_mean/std); output: logits `[B, H, W, num_classes]`
at input size.

Example:
    >>> from mobile_seg.config import ModelConfig
    >>> model = build_model(ModelConfig(alpha=0.35, input_size=(96, 96)))
    >>> model.output_shape
    (None, 96, 96, 2)
"""
from __future__ import annotations

import tf_keras

from mobile_seg.config import ModelConfig
from mobile_seg.model.aspp import aspp
from mobile_seg.model.blocks import upsample_to, L
from mobile_seg.model.decoder import decoder
from mobile_seg.model.mobilenet_v2 import mobilenet_v2
from mobile_seg.model.xception import xception65

BACKBONE_BUILDERS = {"mobilenetv2": mobilenet_v2, "xception65": xception65}
INPUT_NAME = "image"
LOGITS_NAME = "logits"
OUTPUT_NAME = "logits_upsample"


def build_model(config: ModelConfig, name: str | None = None) -> tf_keras.Model:
    """Build the network described by `config` (weights freshly initialised)."""
    h, w = config.input_size
    inputs = L.Input((h, w, 3), name=INPUT_NAME)
    encoder = BACKBONE_BUILDERS[config.backbone](inputs, config)
    if encoder["output_stride"] != config.output_stride:  # a bug, not a user mistake
        raise AssertionError(f"encoder reached stride {encoder['output_stride']}, wanted {config.output_stride}")
    x = aspp(encoder["features"], config)
    if config.decoder_output_stride:
        x = decoder(x, encoder["low_level"], config, channels=config.decoder_channels)
    x = L.Conv2D(config.num_classes, 1, use_bias=True, name=LOGITS_NAME)(x)
    outputs = upsample_to(x, (h, w), OUTPUT_NAME)
    return tf_keras.Model(inputs, outputs, name=name or model_name(config))


def model_name(config: ModelConfig) -> str:
    """A Keras-safe model name, e.g. 'deeplabv3plus_mobilenetv2_a1.0_os16'."""
    head = "deeplabv3plus" if config.decoder_output_stride else "deeplabv3"
    bb = f"mobilenetv2_a{config.alpha}" if config.backbone == "mobilenetv2" else config.backbone
    return f"{head}_{bb}_os{config.output_stride}"
