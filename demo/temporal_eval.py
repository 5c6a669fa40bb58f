"""Temporal stability of the demo's mask on a VOC-layout video sequence (DAVIS parkour).

Runs the demo pipeline (segment → smooth → refine → alpha) over the frames of a split in
order and compares the person mask (alpha > 0.5) with the ground truth:

- flicker: mean fraction of pixels whose label changes between consecutive frames;
  `excess_flicker` = flicker(prediction) − flicker(ground truth) (the part of the
  change not explained by real motion);
- IoU over the whole sequence (intersections and unions summed over frames).

    python -m demo.temporal_eval --data ../shared/data/davis_parkour \
        --model ../shared/data/models/selfie_segmentation.tflite
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from demo.pipeline import Pipeline, Settings
from demo.stats import flicker, iou
from mobile_seg.errors import DatasetError


def load_sequence(root: str | Path, split: str = "all", limit: int | None = None,
                  size: tuple[int, int] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(BGR frames, uint8 masks) of a VOC-layout split, in list order, optionally resized
    to `size` (w, h)."""
    root = Path(root)
    ids_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not ids_file.is_file():
        raise DatasetError(f"split {split!r} not found", ids_file)
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()][:limit]
    frames, masks = [], []
    for i in ids:
        frame = cv2.imread(str(root / "JPEGImages" / f"{i}.jpg"), cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError("cannot read image", root / "JPEGImages" / f"{i}.jpg")
        mask = np.array(Image.open(root / "SegmentationClass" / f"{i}.png"))
        if size is not None and frame.shape[1::-1] != tuple(size):
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def evaluate(model, frames: list[np.ndarray], masks: list[np.ndarray], settings: Settings) -> dict:
    """Flicker and IoU of the pipeline's mask over one sequence (fresh pipeline state)."""
    pipeline = Pipeline(model, settings)
    preds = []
    inter = union = 0
    for frame, gt in zip(frames, masks):
        alpha, _, _ = pipeline.alpha(frame)
        pred = alpha > 0.5
        preds.append(pred)
        valid = gt != 255
        i, u = iou(pred & valid, (gt == 1) & valid)
        inter += i
        union += u
    pred_flicker = flicker(preds)
    gt_flicker = flicker([m == 1 for m in masks])
    return {"frames": len(frames), "iou": inter / union if union else 1.0,
            "flicker": pred_flicker, "gt_flicker": gt_flicker, "excess_flicker": pred_flicker - gt_flicker}


def compare_smoothing(model, frames, masks, base: Settings = Settings(), smoothing: float | None = None) -> dict:
    """{'off': metrics with smoothing 0, 'on': metrics with `smoothing` (default: base's)}."""
    on = base if smoothing is None else replace(base, smoothing=smoothing)
    return {"off": evaluate(model, frames, masks, replace(base, smoothing=0.0)),
            "on": evaluate(model, frames, masks, on)}


def main(argv: list[str] | None = None) -> None:
    from demo.app import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--split", default="all")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--smoothing", type=float, nargs="*", default=[0.0, 0.6])
    ap.add_argument("--refine", default="guided")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--reuse", default="hold")
    ap.add_argument("--resize", default=None)
    ap.add_argument("--plain-ema", action="store_true", help="EMA without confidence weighting")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    frames, masks = load_sequence(args.data, args.split, args.limit)
    for a in args.smoothing:
        s = Settings(smoothing=a, refine=args.refine, every=args.every, reuse=args.reuse, resize=args.resize,
                     confidence_weighted=not args.plain_ema)
        r = evaluate(model, frames, masks, s)
        print(json.dumps({"smoothing": a, "weighted": not args.plain_ema, "refine": args.refine,
                          "every": args.every, "reuse": args.reuse, "resize": s.resize or "model",
                          **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}))


if __name__ == "__main__":
    main()
