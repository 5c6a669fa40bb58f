"""Input-pipeline throughput: images/s of 256×256 training crops at batch 8.

Builds ../shared/data/portraits into a temp folder (or uses --built DIR) and times
`train_dataset` (decode, random scale 0.5–2, pad, crop, flip [, jitter]) and the eval
path. Training consumes ~6 img/s at 256² on 2 cores; the pipeline must stay far ahead.

    .venv/bin/python experiments/input_pipeline.py [--built DIR] [--batches 40] [--runs 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def images_per_second(ds, batch: int, batches: int, warmup: int = 5) -> float:
    it = iter(ds)
    for _ in range(warmup):  # fills the shuffle buffer and the prefetch queue
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--built", type=Path, help="a built dataset (default: build portraits)")
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared/data/portraits")
    parser.add_argument("--split", default="train")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per setting")
    args = parser.parse_args()

    from mobile_seg.data.pipeline import eval_dataset, train_dataset
    from mobile_seg.data.tfrecords import build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        built = args.built
        if built is None:
            result = build_dataset(args.dataset, Path(tmp) / "built")
            built = result.out
            print(f"built {args.dataset.name} in {result.seconds:.1f} s")
        settings = {
            f"train {args.crop}² batch {args.batch}": lambda: train_dataset(
                built, args.split, args.crop, args.batch, seed=0),
            f"train {args.crop}² batch {args.batch} + jitter": lambda: train_dataset(
                built, args.split, args.crop, args.batch, seed=0, jitter=True),
            f"eval {args.crop}² pad batch {args.batch}": lambda: eval_dataset(
                built, args.split, args.crop, args.batch).repeat(),
        }
        print(f"\n{'setting':<34} {'img/s (each run)':>22} {'median':>8}")
        for name, make in settings.items():
            runs = [images_per_second(make(), args.batch, args.batches) for _ in range(args.runs)]
            each = " ".join(f"{r:.0f}" for r in runs)
            print(f"{name:<34} {each:>22} {statistics.median(runs):>8.0f}")


if __name__ == "__main__":
    main()
