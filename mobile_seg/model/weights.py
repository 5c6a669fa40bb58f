"""ImageNet initialisation: TF-slim MobileNetV2 1.0 weights (npz) onto our named layers.

The npz holds slim variable names with `MobilenetV2/` dropped and `/` -> `_`. Our
backbone layers carry the same names, so the mapping is:

    Conv2D `<name>`            <- `<name>_weights`
    DepthwiseConv2D `<name>`   <- `<name>_depthwise_weights`
    BatchNormalization `<name>` <- `<name>_{gamma,beta,moving_mean,moving_variance}`

Every backbone variable must be assigned (shapes checked). `Conv_1` (the 1280-channel
conv) and the classifier bias are in the file but not in DeepLab's encoder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tf_keras

from mobile_seg.config import ModelConfig
from mobile_seg.errors import ConfigError, ModelFileError
from mobile_seg.model import mobilenet_v2, xception

L = tf_keras.layers
# Published with the project's shared data (../shared/data/weights/); pass its path explicitly.
IMAGENET_NPZ_NAME = "mobilenet_v2_1.0_224_imagenet.npz"
UNUSED_KEYS_PREFIXES = ("Conv_1_", "Logits_")


def backbone_layers(model: tf_keras.Model, config: ModelConfig) -> list:
    """The encoder's layers that hold weights, in graph order."""
    prefixes = {"mobilenetv2": mobilenet_v2.LAYER_PREFIXES, "xception65": xception.LAYER_PREFIXES}[config.backbone]
    return [layer for layer in model.layers if layer.name.startswith(prefixes) and layer.weights]


def _keys_for(layer) -> list[str]:
    if isinstance(layer, L.BatchNormalization):
        return [f"{layer.name}_{p}" for p in ("gamma", "beta", "moving_mean", "moving_variance")]
    if isinstance(layer, L.DepthwiseConv2D):
        return [f"{layer.name}_depthwise_weights"]
    if isinstance(layer, L.Conv2D):
        return [f"{layer.name}_weights"]
    raise AssertionError(f"no weight mapping for layer {layer.name} ({type(layer).__name__})")


def load_imagenet_weights(model: tf_keras.Model, config: ModelConfig, path: str | os.PathLike) -> list[str]:
    """Assign the ImageNet MobileNetV2 1.0 backbone weights in `path` to `model`.

    Returns the names of the assigned variables (all backbone variables). Raises
    ConfigError when the config has no ImageNet weights (other alpha, Xception), and
    ModelFileError for a missing/unreadable file, a missing key or a shape mismatch.
    """
    if not config.has_pretrained_weights:
        what = f"mobilenetv2 alpha {config.alpha}" if config.backbone == "mobilenetv2" else config.backbone
        raise ConfigError(f"no ImageNet weights exist for {what} (only mobilenetv2 alpha 1.0); "
                          f"train from scratch without --init-weights")
    path = Path(path)
    if not path.is_file():
        raise ModelFileError("ImageNet weights file not found", path)
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise ModelFileError(f"not a readable .npz weights file ({e})", path) from None

    assigned: list[str] = []
    for layer in backbone_layers(model, config):
        keys = _keys_for(layer)
        if len(keys) != len(layer.weights):
            raise AssertionError(f"{layer.name}: {len(layer.weights)} weights, mapping has {len(keys)}")
        values = []
        for key, var in zip(keys, layer.weights):
            if key not in arrays:
                raise ModelFileError(f"no array {key!r} for layer {layer.name}", path)
            if tuple(arrays[key].shape) != tuple(var.shape):
                raise ModelFileError(f"{key} has shape {tuple(arrays[key].shape)}, layer {layer.name} "
                                     f"needs {tuple(var.shape)}", path)
            values.append(arrays[key].astype(np.float32))
        layer.set_weights(values)
        assigned += [v.name for v in layer.weights]
    return assigned


def unused_keys(path: str | os.PathLike, model: tf_keras.Model, config: ModelConfig) -> list[str]:
    """npz keys that no layer of `model` consumed (expected: only Conv_1_* and Logits_*)."""
    used = {k for layer in backbone_layers(model, config) for k in _keys_for(layer)}
    with np.load(path) as npz:
        return sorted(set(npz.files) - used)
