"""Export our DeepLabV3+ with untrained weights to .tflite (fp32 and full-int8) for `bench`.

Until `mobile-seg export` ships trained models, this gives `mobile-seg bench` models of
exactly our architecture (`mobile_seg.model.deeplab.build_model`) to compare with
MediaPipe's: latency, size and op census do not depend on the weight values. The int8
variant is calibrated on random inputs, so its numbers are not meaningful, only its speed.
Our metadata is embedded, without `metrics` (no accuracy to report for random weights).

    .venv/bin/python experiments/make_standin_model.py --out runs/bench            # α 1.0, ASPP (6,12,18)
    .venv/bin/python experiments/make_standin_model.py --out runs/bench --alpha 0.5 --no-atrous
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import mobile_seg  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from converters.metadata import embed_metadata
from mobile_seg.io_utils import write_bytes_atomic


def convert(model, size: tuple[int, int], int8: bool) -> bytes:
    """tf.lite conversion with a fixed batch of 1 (int8: int8 input and output)."""
    import tensorflow as tf

    shape = [1, size[0], size[1], 3]
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.uniform(-1, 1, shape).astype(np.float32)] for _ in range(16))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench", help="output folder")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--no-atrous", action="store_true", help="ASPP = 1x1 + image pooling only")
    ap.add_argument("--decoder-channels", type=int, default=256, help="decoder separable conv width")
    ap.add_argument("--output-stride", type=int, default=16, help="encoder output stride (8, 16, 32)")
    args = ap.parse_args()
    import tf_keras

    from mobile_seg.config import ModelConfig
    from mobile_seg.model.deeplab import build_model, model_name

    tf_keras.utils.set_random_seed(0)
    config = ModelConfig(alpha=args.alpha, input_size=(args.size, args.size),
                         atrous_rates=() if args.no_atrous else None, decoder_channels=args.decoder_channels,
                         output_stride=args.output_stride)
    model = build_model(config)
    dec = "" if args.decoder_channels == 256 else f"_dec{args.decoder_channels}"
    stem = f"{model_name(config)}{'_noatrous' if args.no_atrous else ''}{dec}_{args.size}_untrained"
    for variant in ("fp32", "int8"):
        start = time.time()
        blob = convert(model, config.input_size, variant == "int8")
        meta = {"name": stem, "labels": ["background", "person"],
                "input": {"height": args.size, "width": args.size, "color": "RGB",
                          "mean": list(config.input_mean), "std": list(config.input_std), "resize": "stretch"},
                "output": {"kind": "logits", "person_index": 1}, "variant": variant,
                "model_config": config.to_dict()}
        path = Path(args.out) / f"{stem}_{variant}.tflite"
        write_bytes_atomic(path, embed_metadata(blob, meta))
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB, {config.describe()}, {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
