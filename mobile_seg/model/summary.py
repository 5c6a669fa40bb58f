"""Model size and cost: parameters, multiply-adds at the configured input size, stride reached.

Multiply-adds are counted from layer shapes (conv, depthwise conv, dense), the way the
MobileNet/DeepLab papers count them; BN, activations, pooling and resizing are free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tf_keras

from mobile_seg.config import ModelConfig

L = tf_keras.layers


@dataclass(frozen=True)
class ModelSummary:
    config: ModelConfig
    params: int            # all weights, BN moving statistics included
    trainable_params: int
    madds: int             # multiply-adds of one forward pass
    output_stride: int     # input size / encoder (ASPP input) feature size
    feature_size: tuple[int, int]
    num_layers: int

    def to_dict(self) -> dict:
        return {"model": self.config.describe(), "params": self.params,
                "trainable_params": self.trainable_params, "madds": self.madds,
                "output_stride": self.output_stride, "feature_size": list(self.feature_size),
                "num_layers": self.num_layers, "config": self.config.to_dict()}

    def format(self) -> str:
        h, w = self.config.input_size
        fh, fw = self.feature_size
        return "\n".join([
            f"model          {self.config.describe()}",
            f"params         {self.params:,} ({self.params / 1e6:.2f} M; trainable {self.trainable_params:,})",
            f"multiply-adds  {self.madds:,} ({self.madds / 1e9:.2f} B at {h}x{w})",
            f"output stride  {self.output_stride} (encoder features {fh}x{fw})",
            f"layers         {self.num_layers}",
        ])


def layer_madds(layer) -> int:
    """Multiply-adds of one layer for its (static) output shape; 0 for non-matmul layers."""
    if isinstance(layer, L.DepthwiseConv2D):  # subclass of Conv2D: test it first
        _, oh, ow, _ = layer.output_shape
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        return int(oh * ow * kh * kw * cin * mult)
    if isinstance(layer, L.SeparableConv2D):
        _, oh, ow, cout = layer.output_shape
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        return int(oh * ow * (kh * kw * cin * mult + cin * mult * cout))
    if isinstance(layer, L.Conv2D):
        _, oh, ow, cout = layer.output_shape
        kh, kw, cin, _ = layer.kernel.shape
        return int(oh * ow * kh * kw * cin * cout)
    if isinstance(layer, L.Dense):
        cin, cout = layer.kernel.shape
        return int(np.prod(layer.output_shape[1:-1] or [1]) * cin * cout)
    return 0


def encoder_output_stride(model: tf_keras.Model, config: ModelConfig) -> tuple[int, tuple[int, int]]:
    """The stride actually reached: from the smallest spatial map of the graph (the ASPP input)."""
    h, w = config.input_size
    sizes = [layer.output_shape for layer in model.layers
             if isinstance(layer.output_shape, tuple) and len(layer.output_shape) == 4]
    fh, fw = min((s[1], s[2]) for s in sizes if s[1] > 1)
    for stride in (1, 2, 4, 8, 16, 32, 64):
        if math.ceil(h / stride) == fh and math.ceil(w / stride) == fw:
            return stride, (fh, fw)
    return round(h / fh), (fh, fw)


def summarize(model: tf_keras.Model, config: ModelConfig) -> ModelSummary:
    stride, feature = encoder_output_stride(model, config)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    return ModelSummary(config=config, params=int(model.count_params()), trainable_params=trainable,
                        madds=sum(layer_madds(layer) for layer in model.layers),
                        output_stride=stride, feature_size=feature, num_layers=len(model.layers))


def summarize_config(config: ModelConfig) -> ModelSummary:
    """Build the model for `config` and summarise it."""
    from mobile_seg.model.deeplab import build_model
    return summarize(build_model(config), config)
