"""Why is (or isn't) an int8 DeepLab faster than fp32? One interleaved single-thread run.

Converts the same network several ways and times all files round-robin in one process
(1 thread, XNNPACK unless marked), next to each file's op census:

  fp32                  float graph, fixed batch 1 (the reference)
  int8-ptq float-io     full-integer PTQ, float input/output (QUANTIZE/DEQUANTIZE at the ends)
  int8-ptq int8-io      same, int8 input/output
  int8-ptq uint8-io     same, uint8 input/output
  int8-ptq per-tensor   PTQ with per-tensor weights (XNNPACK qs8 instead of qc8 kernels)
  qat-int8 float-io     QAT model (tfmot) converted with optimizations=DEFAULT
  qat-int8 int8-io      same, int8 input/output
  qat no-optimizations  QAT model converted WITHOUT converter.optimizations
  qat-int8 dyn-batch    QAT model traced with a dynamic batch
  int8-ptq dyn-batch    PTQ traced with a dynamic batch (dilated convs -> SPACE_TO_BATCH_ND)
  fp32 dyn-batch        fp32 traced with a dynamic batch
  fp32 builtin / int8 builtin   XNNPACK off (TFLite's own kernels)

Usage:
    .venv/bin/python experiments/int8_latency.py [--run RUN_DIR] [--alpha 1.0] [--size 256]
        [--runs 30] [--cases fp32,int8-ptq-int8io,...] [--out DIR] [--json]

Without --run the network has random weights and BN statistics from a few random batches:
latency and the op census do not depend on the weight values.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mobile_seg  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF loads)

CASES = ("fp32", "int8-ptq-floatio", "int8-ptq-int8io", "int8-ptq-uint8io", "int8-ptq-pertensor",
         "qat-int8-floatio", "qat-int8-int8io", "qat-noopt", "qat-int8-dynbatch", "int8-ptq-dynbatch",
         "fp32-dynbatch",
         "fp32-builtin", "int8-ptq-int8io-builtin")


def convert(model, size, *, mode: str, io: str = "float", dynamic_batch: bool = False,
            per_tensor: bool = False, calib=None) -> bytes:
    import tensorflow as tf
    shape = [None if dynamic_batch else 1, size, size, 3]
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    c = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    if mode in ("ptq", "qat"):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "ptq":
        c.representative_dataset = lambda: ([x[None]] for x in calib)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if per_tensor:
            c._experimental_disable_per_channel = True
    if io != "float":
        c.inference_input_type = c.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
    return c.convert()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="training run to load (default: random weights)")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default="/tmp/int8_latency", help="where the .tflite files go")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from converters.report import interleaved_latency
    from mobile_seg.config import ModelConfig
    from mobile_seg.model import build_model
    from mobile_seg.qat import quantize
    from mobile_seg.tflite_model import op_census

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    rng = np.random.default_rng(0)
    if args.run:
        from mobile_seg.checkpoint import load_run
        model, config, _ = load_run(args.run)
        size = config.input_size[0]
    else:
        size = args.size
        config = ModelConfig(alpha=args.alpha, input_size=(size, size))
        model = build_model(config)
        for _ in range(3):  # non-trivial BN statistics
            model(rng.uniform(-1, 1, (4, size, size, 3)).astype(np.float32), training=True)
    calib = rng.uniform(-1, 1, (16, size, size, 3)).astype(np.float32)
    qat_model = quantize(model) if any(c.startswith("qat") for c in cases) else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, bytes] = {}
    recipes = {
        "fp32": lambda: convert(model, size, mode="fp32"),
        "int8-ptq-floatio": lambda: convert(model, size, mode="ptq", calib=calib),
        "int8-ptq-int8io": lambda: convert(model, size, mode="ptq", io="int8", calib=calib),
        "int8-ptq-uint8io": lambda: convert(model, size, mode="ptq", io="uint8", calib=calib),
        "int8-ptq-pertensor": lambda: convert(model, size, mode="ptq", io="int8", per_tensor=True, calib=calib),
        "qat-int8-floatio": lambda: convert(qat_model, size, mode="qat"),
        "qat-int8-int8io": lambda: convert(qat_model, size, mode="qat", io="int8"),
        "qat-noopt": lambda: convert(qat_model, size, mode="fp32"),
        "qat-int8-dynbatch": lambda: convert(qat_model, size, mode="qat", dynamic_batch=True),
        "int8-ptq-dynbatch": lambda: convert(model, size, mode="ptq", dynamic_batch=True, calib=calib),
        "fp32-dynbatch": lambda: convert(model, size, mode="fp32", dynamic_batch=True),
    }
    alias = {"fp32-builtin": "fp32", "int8-ptq-int8io-builtin": "int8-ptq-int8io"}
    for case in cases:
        src = alias.get(case, case)
        if src not in built:
            t = time.perf_counter()
            built[src] = recipes[src]()
            (out / f"{src}.tflite").write_bytes(built[src])
            print(f"converted {src} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    paths = {c: out / f"{alias.get(c, c)}.tflite" for c in cases}
    xnn = {c: not c.endswith("builtin") for c in cases}
    load0 = os.getloadavg()[0]
    lat = interleaved_latency(paths, runs=args.runs, threads=args.threads, xnnpack=xnn)
    load1 = os.getloadavg()[0]
    ref = lat.get("fp32", {}).get("median_ms")
    rows = []
    for c in cases:
        census = op_census(built[alias.get(c, c)])
        rows.append({"case": c, "size_mb": round(len(built[alias.get(c, c)]) / 1e6, 3),
                     "int8_ops": census.int8, "float_ops": census.float, "quantize": census.quantize,
                     "dequantize": census.dequantize, "float_convs": census.float_convs,
                     "float_op_kinds": census.float_ops, "xnnpack": xnn[c],
                     "median_ms": round(lat[c]["median_ms"], 2), "min_ms": round(lat[c]["min_ms"], 2),
                     "x_fp32": round(lat[c]["median_ms"] / ref, 3) if ref else None})
    print(f"MobileNetV2 a{config.alpha} DeepLabV3+ OS{config.output_stride} {size}x{size}, "
          f"{args.threads} thread(s), {args.runs} interleaved rounds, load avg {load0:.2f} -> {load1:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"| case | MB | ops int8/float | quantize/dequantize | float convs | XNNPACK | median ms | min ms | × fp32 |")
    print("|---|---:|---|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['size_mb']:.2f} | {r['int8_ops']}/{r['float_ops']} | "
              f"{r['quantize']}/{r['dequantize']} | {r['float_convs']} | {'on' if r['xnnpack'] else 'off'} | "
              f"{r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['x_fp32'] if r['x_fp32'] is not None else '–'} |")
    for r in rows:
        if r["float_op_kinds"] and r["case"] not in ("fp32", "fp32-dynbatch", "fp32-builtin"):
            print(f"  {r['case']}: float ops {r['float_op_kinds']}")
    if args.json:
        print(json.dumps({"rows": rows, "threads": args.threads, "runs": args.runs, "size": size,
                          "alpha": config.alpha, "loadavg": [load0, load1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
