"""Temporal stability of the demo's mask on VOC-layout video sequences (DAVIS).

Runs the demo pipeline (segment → smooth → subject → refine → alpha) over the frames of
each sequence in order and compares the person mask (alpha > 0.5) with the ground truth:

- flicker: mean fraction of pixels whose label changes between consecutive frames;
  `excess_flicker` = flicker(prediction) − flicker(ground truth) (the part of the
  change not explained by real motion);
- IoU over the whole sequence (intersections and unions summed over frames);
- lag: how many frames the mask trails the ground truth (`demo.stats.mask_lag`).

    python -m demo.temporal_eval --data ../shared/data/davis_parkour ../shared/data/davis16_person \
        --model ../shared/data/models/selfie_segmentation.tflite --smoothing 0 0.6 --subject all largest
"""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from demo.pipeline import Pipeline, Settings
from demo.stats import flicker, iou, mask_lag
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


def load_sequences(root: str | Path, split: str | None = None, limit: int | None = None
                   ) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """[(sequence name, frames, masks)] of a split whose ids are `<sequence>_<frame>` in
    frame order (davis_parkour's `all`, davis16_person's `val`: lucia + hockey). `split`
    None: `all` if the dataset has it, else `val`."""
    root = Path(root)
    if split is None:
        split = "all" if (root / "ImageSets" / "Segmentation" / "all.txt").is_file() else "val"
    ids_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not ids_file.is_file():
        raise DatasetError(f"split {split!r} not found", ids_file)
    frames, masks = load_sequence(root, split, limit)
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()][:limit]
    sequences: list = []
    for i, frame, mask in zip(ids, frames, masks):
        name = i.rsplit("_", 1)[0]
        if not sequences or sequences[-1][0] != name:
            sequences.append((name, [], []))
        sequences[-1][1].append(frame)
        sequences[-1][2].append(mask)
    return sequences


def evaluate(model, frames: list[np.ndarray], masks: list[np.ndarray], settings: Settings,
             max_lag: int = 3) -> dict:
    """Flicker, IoU and lag of the pipeline's mask over one sequence (fresh pipeline state).

    With `settings.delay` N the output at step t shows frame t - N (frame 0 until then), so
    it is scored against that frame's ground truth.
    """
    pipeline = Pipeline(model, settings)
    preds, shown_gts = [], []
    inter = union = 0
    for t, frame in enumerate(frames):
        alpha, _, _ = pipeline.alpha(frame)
        gt = masks[max(0, t - settings.delay)]
        pred = alpha > 0.5
        preds.append(pred)
        valid = gt != 255
        person = (gt == 1) & valid
        shown_gts.append(person)
        i, u = iou(pred & valid, person)
        inter += i
        union += u
    pred_flicker = flicker(preds)
    gt_flicker = flicker([m == 1 for m in masks])
    return {"frames": len(frames), "iou": inter / union if union else 1.0, "inter": inter, "union": union,
            "flicker": pred_flicker, "gt_flicker": gt_flicker, "excess_flicker": pred_flicker - gt_flicker,
            "lag": mask_lag(preds, shown_gts, max_lag)}


def evaluate_sequences(model, sequences, settings: Settings) -> dict:
    """`evaluate` over several sequences: IoU from summed intersections and unions, flicker
    and lag averaged weighted by frames."""
    rows = [evaluate(model, frames, masks, settings) for _, frames, masks in sequences]
    n = sum(r["frames"] for r in rows)
    inter, union = sum(r["inter"] for r in rows), sum(r["union"] for r in rows)

    def mean(key):
        return sum(r[key] * r["frames"] for r in rows) / n

    return {"frames": n, "sequences": len(rows), "iou": inter / union if union else 1.0,
            "flicker": mean("flicker"), "gt_flicker": mean("gt_flicker"),
            "excess_flicker": mean("excess_flicker"), "lag": mean("lag")}


def compare_smoothing(model, frames, masks, base: Settings = Settings(), smoothing: float | None = None) -> dict:
    """{'off': metrics with smoothing 0, 'on': metrics with `smoothing` (default: base's)}."""
    on = base if smoothing is None else replace(base, smoothing=smoothing)
    return {"off": evaluate(model, frames, masks, replace(base, smoothing=0.0)),
            "on": evaluate(model, frames, masks, on)}


def main(argv: list[str] | None = None) -> None:
    from demo.app import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, nargs="+", help="VOC-layout sequence folder(s)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--split", default=None, help="default: all if present, else val")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--smoothing", type=float, nargs="*", default=[0.0, 0.6])
    ap.add_argument("--motion", type=float, nargs="*", default=[0.0])
    ap.add_argument("--subject", nargs="*", default=["all"])
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-area", type=float, default=0.0)
    ap.add_argument("--delay", type=int, nargs="*", default=[0])
    ap.add_argument("--refine", default="guided")
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--reuse", default="hold")
    ap.add_argument("--resize", default=None)
    ap.add_argument("--plain-ema", action="store_true", help="EMA without confidence weighting")
    args = ap.parse_args(argv)
    model = load_model(args.model)
    for data in args.data:
        sequences = load_sequences(data, args.split, args.limit)
        for a, motion, subject, delay in itertools.product(args.smoothing, args.motion, args.subject, args.delay):
            s = Settings(smoothing=a, motion=motion, subject=subject, threshold=args.threshold,
                         min_area=args.min_area, delay=delay, refine=args.refine, every=args.every,
                         reuse=args.reuse, resize=args.resize, confidence_weighted=not args.plain_ema)
            r = evaluate_sequences(model, sequences, s)
            print(json.dumps({"data": Path(data).name, "smoothing": a, "weighted": not args.plain_ema,
                              "motion": motion, "subject": subject, "min_area": args.min_area,
                              "delay": delay, "refine": args.refine, "every": args.every, "reuse": args.reuse,
                              "resize": s.resize or "model",
                              **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}}),
                  flush=True)


if __name__ == "__main__":
    main()
