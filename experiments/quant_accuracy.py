"""Where do quantized models lose accuracy? Paired, per-image comparison with the Keras model.

For each .tflite in EXPORT_DIR (and the Keras float model of RUN_DIR, and optionally the
Keras QAT model of QAT_DIR), score every image of a split at original resolution as
`mobile-seg eval` does, then report per model:

- mIoU and its drop vs the Keras float model, with a 95 % paired bootstrap interval over
  images (is a difference bigger than what 44 images can resolve?),
- the fraction of pixels whose class differs from the Keras float prediction, and the share
  of those flips that lie within 3 px of a boundary of the float prediction.

Usage:
    .venv/bin/python experiments/quant_accuracy.py --run RUN_DIR --export EXPORT_DIR --data BUILT_DIR
        [--qat QAT_DIR] [--split val] [--boot 2000] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mobile_seg  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF)


def miou_of(matrices: np.ndarray) -> float:
    m = matrices.sum(0)
    tp = np.diag(m).astype(np.float64)
    union = m.sum(0) + m.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--qat")
    ap.add_argument("--split", default="val")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import cv2
    from mobile_seg.checkpoint import load_run
    from mobile_seg.data.pipeline import iterate_examples
    from mobile_seg.evaluate import KerasPredictor, predict_mask
    from mobile_seg.tflite_model import TFLiteModel

    model, config, _ = load_run(args.run)
    predictors = {"keras-float": KerasPredictor(model, config)}
    if args.qat:
        from mobile_seg.qat import load_qat
        qat_model, _, _, _ = load_qat(args.qat)
        predictors["keras-qat"] = KerasPredictor(qat_model, config)
    for path in sorted(Path(args.export).glob("*.tflite")):
        predictors[path.stem] = TFLiteModel(path)
    n = config.num_classes
    per_image = {k: [] for k in predictors}
    flips = {k: [0, 0, 0] for k in predictors}  # flipped, flipped near boundary, pixels
    kernel = np.ones((7, 7), np.uint8)
    for _id, image, mask in iterate_examples(args.data, args.split):
        ref = None
        for name, predictor in predictors.items():
            pred = predict_mask(predictor, image)
            valid = mask != 255
            cm = np.bincount(mask[valid].astype(np.int64) * n + pred[valid], minlength=n * n).reshape(n, n)
            per_image[name].append(cm)
            if ref is None:
                ref = pred
                edge = cv2.morphologyEx(ref, cv2.MORPH_GRADIENT, kernel) > 0
            diff = pred != ref
            flips[name][0] += int(diff.sum())
            flips[name][1] += int((diff & edge).sum())
            flips[name][2] += diff.size
    rng = np.random.default_rng(0)
    base = np.stack(per_image["keras-float"])
    idx = rng.integers(0, len(base), (args.boot, len(base)))
    base_boot = np.array([miou_of(base[i]) for i in idx])
    rows = []
    for name, cms in per_image.items():
        cms = np.stack(cms)
        drop = 100 * (miou_of(base) - miou_of(cms))
        boot = 100 * (base_boot - np.array([miou_of(cms[i]) for i in idx]))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        f, fe, total = flips[name]
        rows.append({"model": name, "miou": round(100 * miou_of(cms), 3), "drop_pt": round(drop, 3),
                     "drop_ci95": [round(float(lo), 3), round(float(hi), 3)],
                     "flipped_pct": round(100 * f / total, 4),
                     "flips_near_boundary_pct": round(100 * fe / f, 1) if f else None})
    print(f"{len(base)} {args.split} images; drop vs keras-float with 95 % paired bootstrap interval "
          f"({args.boot} resamples); flips = pixels whose class differs from keras-float")
    print("| model | mIoU % | drop pt | 95 % interval | flipped px % | flips within 3 px of a boundary % |")
    print("|---|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['miou']:.2f} | {r['drop_pt']:+.2f} | [{r['drop_ci95'][0]:+.2f}, "
              f"{r['drop_ci95'][1]:+.2f}] | {r['flipped_pct']:.3f} | {r['flips_near_boundary_pct'] or '–'} |")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
