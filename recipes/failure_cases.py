"""Per-image person IoU of a .tflite model (and a baseline) on val splits; pictures of the worst.

Usage:
  python recipes/failure_cases.py MODEL.tflite BASELINE.tflite OUT_DIR BUILT_DATASET... [--worst N]
      [--min-person F]

Writes OUT_DIR/per_image.csv (dataset, id, IoU ours, IoU baseline, person fraction) and
OUT_DIR/failure_<dataset>_<id>.jpg for the N images where our model does worst: each is
image | truth | ours | baseline, person in red. Images where the person covers less than
--min-person of the frame (default 1 %) are left out of the ranking (the CSV has them).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from mobile_seg.data.palette import overlay
from mobile_seg.data.pipeline import iterate_examples
from mobile_seg.errors import ConfigError, DatasetError, ModelFileError, run_script
from mobile_seg.evaluate import load_predictor, predict_mask
from mobile_seg.io_utils import atomic_path
from mobile_seg.metrics import ConfusionMatrix
from mobile_seg.vis import _save_jpeg, side_by_side

MAX_SIDE = 320


def person_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Person IoU of one image (255 in `truth` ignored); NaN when neither has a person."""
    cm = ConfusionMatrix(2)
    cm.update(pred, truth)
    return float(cm.per_class_iou()[1])


def _small(rgb: np.ndarray) -> np.ndarray:
    import cv2
    h, w = rgb.shape[:2]
    s = MAX_SIDE / max(h, w)
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb


USAGE = ("usage: python recipes/failure_cases.py MODEL.tflite BASELINE.tflite OUT_DIR BUILT_DATASET... "
         "[--worst N] [--min-person F]")


def parse_args(argv: list[str]) -> tuple[str, str, Path, list[str], int, float]:
    """MODEL, BASELINE, OUT_DIR, datasets, --worst and --min-person; a ConfigError,
    ModelFileError or DatasetError (one line, via run_script) for bad ones."""
    opts = {"--worst": "6", "--min-person": "0.01"}
    for flag in opts:
        if flag in argv:
            i = argv.index(flag)
            if i + 1 >= len(argv):
                raise ConfigError(f"{flag} needs a value; {USAGE}")
            opts[flag] = argv[i + 1]
            argv = argv[:i] + argv[i + 2:]
    try:
        worst, min_person = int(opts["--worst"]), float(opts["--min-person"])
    except ValueError:
        raise ConfigError(f"--worst takes an integer and --min-person a number, got {opts['--worst']!r}, "
                          f"{opts['--min-person']!r}") from None
    unknown = [a for a in argv if a.startswith("-")]
    if unknown or len(argv) < 4:
        raise ConfigError(f"unknown option {unknown[0]}" if unknown
                          else f"expected MODEL, BASELINE, OUT_DIR and a dataset; {USAGE}")
    model_path, baseline_path, out_dir, *datasets = argv
    for path in (model_path, baseline_path):
        if not Path(path).is_file():
            raise ModelFileError("no such model file", path)
    for data in datasets:
        if not Path(data).is_dir():
            raise DatasetError("no such built dataset (a `mobile-seg data build` output folder)", data)
    return model_path, baseline_path, Path(out_dir), datasets, worst, min_person


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        sys.exit(0)
    model_path, baseline_path, out_dir, datasets, worst, min_person = parse_args(argv)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours, base = load_predictor(tflite=model_path, num_threads=1), load_predictor(tflite=baseline_path, num_threads=1)
    rows, cases = [], []
    for data in datasets:
        name = Path(data).name
        for ex_id, image, truth in iterate_examples(data, "val"):
            a, b = predict_mask(ours, image), predict_mask(base, image)
            row = (name, ex_id, person_iou(a, truth), person_iou(b, truth), float((truth == 1).mean()))
            rows.append(row)
            if np.isfinite(row[2]) and row[4] >= min_person:
                cases.append((row, image, truth, a, b))
    with atomic_path(out_dir / "per_image.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "id", "iou_ours", "iou_baseline", "person_fraction"])
        w.writerows([r[0], r[1], f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[4]:.4f}"] for r in rows)
    by_set: dict[str, list[float]] = {}
    for r in rows:
        by_set.setdefault(r[0], []).append(r[2:4])
    for name, v in by_set.items():
        v = np.array(v, dtype=float)
        print(f"{name}: per-image mean person IoU ours {np.nanmean(v[:, 0]):.4f}, "
              f"baseline {np.nanmean(v[:, 1]):.4f} ({len(v)} images)")
    cases.sort(key=lambda c: c[0][2])
    for row, image, truth, a, b in cases[:worst]:
        panels = [_small(image), _small(overlay(image, (truth == 1).astype(np.uint8))),
                  _small(overlay(image, a)), _small(overlay(image, b))]
        path = out_dir / f"failure_{row[0]}_{row[1]}.jpg"
        _save_jpeg(side_by_side(panels), path)
        print(f"{path}: IoU ours {row[2]:.3f}, baseline {row[3]:.3f}, person {row[4]:.1%} of the image")


if __name__ == "__main__":
    run_script(main, sys.argv[1:])
