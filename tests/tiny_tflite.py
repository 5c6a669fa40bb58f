"""Tiny .tflite models for tests, built once per session with tf.lite (a few seconds).

A few convolutions on a 64×64 RGB input with a fixed batch of 1 (converted from a
concrete function with TensorSpec([1, 64, 64, 3]), so the int8 models have static shapes):
fp32, full-int8 (int8 in/out), full-int8 with uint8 in/out, a fp32 copy carrying our
metadata, and a model whose input has dynamic spatial dims (None, None) for the error path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import mobile_seg  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF is imported)

SIZE = 64
_BUILT: dict[str, Path] = {}


def _net(h, w):
    import tf_keras

    x = inp = tf_keras.Input((h, w, 3), batch_size=1, name="image")
    x = tf_keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem_conv")(x)
    x = tf_keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="block_dw")(x)
    x = tf_keras.layers.Conv2D(16, 1, activation="relu", name="block_project")(x)
    x = tf_keras.layers.Conv2D(2, 1, name="logits_conv")(x)
    x = tf_keras.layers.UpSampling2D(2, interpolation="bilinear", name="logits_upsample")(x)
    return tf_keras.Model(inp, x, name="tiny_seg")


def _convert(model, int_type=None) -> bytes:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if int_type is not None:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = int_type
    return conv.convert()


TINY_METADATA = {
    "name": "tiny-seg", "labels": ["background", "person"],
    "input": {"height": SIZE, "width": SIZE, "color": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3,
              "resize": "stretch"},
    "output": {"kind": "logits", "person_index": 1}, "variant": "fp32",
    "metrics": {"portraits/val": {"person_iou": 0.61, "miou": 0.70}},
}


def tiny_models(out_dir: Path | None = None) -> dict[str, Path]:
    """{"fp32", "int8", "uint8", "fp32_meta", "dynamic"} → .tflite paths, built into `out_dir`
    (a temp dir if None) on the first call and reused by later ones."""
    if _BUILT:
        return _BUILT
    import tensorflow as tf
    import tf_keras

    from converters.metadata import embed_metadata

    tf_keras.utils.set_random_seed(0)
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="mobile_seg_tiny_tflite_"))
    out.mkdir(parents=True, exist_ok=True)
    model = _net(SIZE, SIZE)
    fp32 = _convert(model)
    blobs = {"fp32": fp32, "int8": _convert(model, tf.int8), "uint8": _convert(model, tf.uint8),
             "fp32_meta": embed_metadata(fp32, TINY_METADATA),
             "dynamic": tf.lite.TFLiteConverter.from_keras_model(_net(None, None)).convert()}
    for name, blob in blobs.items():
        path = out / f"tiny_{name}.tflite"
        path.write_bytes(blob)
        _BUILT[name] = path
    return _BUILT
