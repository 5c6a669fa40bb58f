"""Visualise predictions of a run or a .tflite file on a folder of images.

For each image `<id>` in --images it writes to --out:
    <id>.png          the predicted mask as a palette PNG (indices 0/1 + VOC colours: it
                      looks right in any viewer and still reads back as class indices)
    <id>_overlay.jpg  the image with the prediction blended in
    <id>_side.jpg     image | prediction | ground truth (when --masks has <id>.png)
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mobile_seg.errors import DatasetError
from mobile_seg.io_utils import atomic_path, check_output_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SEPARATOR_PX = 4


@dataclass
class VisResult:
    out_dir: Path
    images: int = 0
    with_truth: int = 0
    files: list[str] = field(default_factory=list)
    legend: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)  # (class name, colour)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "images": self.images, "with_truth": self.with_truth,
                "files": len(self.files), "legend": {name: list(rgb) for name, rgb in self.legend}}

    def format_legend(self) -> str:
        """'background black, person (128,0,0), ...': which colour is which class."""
        return ", ".join(f"{name} {'black' if rgb == (0, 0, 0) else '(%d,%d,%d)' % rgb}"
                         for name, rgb in self.legend)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise DatasetError(f"cannot read image ({e})", path) from None


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DatasetError(f"mask is {im.mode}, expected a single-channel index PNG", path)
            return np.asarray(im).astype(np.uint8)
    except OSError as e:
        raise DatasetError(f"cannot read mask ({e})", path) from None


def _save_jpeg(rgb: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=90)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Concatenate equal-height RGB panels left to right with white separators."""
    h = panels[0].shape[0]
    sep = np.full((h, SEPARATOR_PX, 3), 255, np.uint8)
    parts = []
    for i, p in enumerate(panels):
        if i:
            parts.append(sep)
        parts.append(p)
    return np.concatenate(parts, axis=1)


def list_images(images_dir: str | os.PathLike) -> list[Path]:
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError("images folder not found", images_dir)
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder", images_dir)
    return files


def visualize(images_dir: str | os.PathLike, out_dir: str | os.PathLike, *, run=None, tflite=None,
              masks_dir: str | os.PathLike | None = None, predictor=None, resize: str = "stretch",
              limit: int | None = None, alpha: float = 0.5, progress: bool = True) -> VisResult:
    """Predict every image of `images_dir` and write masks, overlays and side-by-sides."""
    from mobile_seg.data.palette import VOC_PALETTE, colorize, overlay, save_index_png
    from mobile_seg.evaluate import load_predictor, predict_mask

    check_output_path(out_dir, "dir")
    files = list_images(images_dir)[:limit] if limit else list_images(images_dir)
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise DatasetError("masks folder not found", masks_dir)
    if predictor is None:
        predictor = load_predictor(run, tflite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = VisResult(out)
    result.legend = [(name, tuple(int(c) for c in VOC_PALETTE[i])) for i, name in enumerate(predictor.labels)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(files), unit="img", desc="vis", file=sys.stderr, dynamic_ncols=True)
    try:
        for path in files:
            image = _read_rgb(path)
            pred = predict_mask(predictor, image, resize)
            stem = path.stem
            save_index_png(pred, out / f"{stem}.png")
            _save_jpeg(overlay(image, pred, alpha), out / f"{stem}_overlay.jpg")
            result.files += [f"{stem}.png", f"{stem}_overlay.jpg"]
            panels = [image, colorize(pred)]
            truth = Path(masks_dir) / f"{stem}.png" if masks_dir is not None else None
            if truth is not None and truth.is_file():
                gt = _read_mask(truth)
                if gt.shape != pred.shape:
                    raise DatasetError(f"mask is {gt.shape[1]}x{gt.shape[0]}, image "
                                       f"{pred.shape[1]}x{pred.shape[0]}", truth)
                panels.append(colorize(gt))
                result.with_truth += 1
            _save_jpeg(side_by_side(panels), out / f"{stem}_side.jpg")
            result.files.append(f"{stem}_side.jpg")
            result.images += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result
