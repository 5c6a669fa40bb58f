"""Training throughput: the real input pipeline vs the same model fed from memory.

Runs the real training loop (`mobile_seg.training.train`) twice per round, in ABBA order so
that load from other jobs lands on both alike: once reading the built dataset through the
tf.data pipeline (decode, random scale, crop, flip), once from one in-memory batch
repeated (no input work at all). img/s excludes each run's first step (tracing). The
pipeline's overhead is 1 - pipeline / in-memory.

    .venv/bin/python experiments/train_throughput.py /tmp/built/portraits --alpha 1.0 --crop-size 256 \
        --batch-size 8 --steps 20 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mobile_seg  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF loads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="built dataset (mobile-seg data build --out)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--backbone", default="mobilenetv2")
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (+1 untimed)")
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds (each: pipeline + in-memory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import tensorflow as tf
    from mobile_seg.config import ModelConfig, TrainConfig
    from mobile_seg.data.augment import make_train_dataset
    from mobile_seg.training import train

    model_cfg = ModelConfig(backbone=args.backbone, alpha=args.alpha, input_size=(args.crop_size,) * 2)
    train_cfg = TrainConfig(split=args.split, batch_size=args.batch_size, steps=args.steps + 1,
                            checkpoint_every=10 ** 6, log_every=10 ** 6, warmup_steps=0)
    batch = next(iter(make_train_dataset(args.data, model_cfg, train_cfg, seed=0)))
    in_memory = tf.data.Dataset.from_tensors(tuple(t.numpy() for t in batch)).repeat()

    results = {"pipeline": [], "in-memory": []}
    # one untimed run first: file cache, TF kernels and thread pools warm up for both feeds
    with tempfile.TemporaryDirectory() as tmp:
        train(args.data, Path(tmp) / "run", model_cfg, train_cfg.replace(steps=3), progress=False)
    order = []
    for r in range(args.rounds):
        order += ["pipeline", "in-memory"] if r % 2 == 0 else ["in-memory", "pipeline"]
    for feed in order:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = train(args.data, Path(tmp) / "run", model_cfg, train_cfg, progress=False,
                        dataset=None if feed == "pipeline" else in_memory)
            results[feed].append(res.images_per_sec)
            print(f"{feed:10s} {res.images_per_sec:7.2f} img/s  ({args.steps} timed steps, "
                  f"{time.perf_counter() - start:.0f} s with tracing)", flush=True)

    pipe = statistics.median(results["pipeline"])
    mem = statistics.median(results["in-memory"])
    overhead = 1.0 - pipe / mem
    print(f"\n{model_cfg.describe()}, batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'feed':10s} {'img/s (median)':>15s}")
    print(f"{'pipeline':10s} {pipe:15.2f}")
    print(f"{'in-memory':10s} {mem:15.2f}")
    print(f"overhead of the input pipeline: {100 * overhead:.1f} %")
    if args.json:
        print(json.dumps({"pipeline_img_s": pipe, "in_memory_img_s": mem, "overhead": overhead,
                          "runs": results, "model": model_cfg.describe(), "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
