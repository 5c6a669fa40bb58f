"""Shared fixtures: where ../shared/data lives, and small temp copies of it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOBILE_SEG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; the suite needs it (it is beside every clone, CI included)."""
    if not (SHARED_DATA / "MANIFEST.md").exists():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set MOBILE_SEG_SHARED_DATA)")
    return SHARED_DATA


def copy_voc(src: Path, dst: Path, n_train: int, n_val: int) -> dict[str, list[str]]:
    """Copy the first ids of train/val of a VOC folder into `dst`; returns the splits."""
    splits = {s: (src / "ImageSets/Segmentation" / f"{s}.txt").read_text().split()[:n]
              for s, n in (("train", n_train), ("val", n_val))}
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / d).mkdir(parents=True, exist_ok=True)
    for ids in splits.values():
        for i in ids:
            shutil.copy(src / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages")
            shutil.copy(src / "SegmentationClass" / f"{i}.png", dst / "SegmentationClass")
    for s, ids in splits.items():
        (dst / "ImageSets/Segmentation" / f"{s}.txt").write_text("\n".join(ids) + "\n")
    return splits


def make_class_voc(root: Path, n_train: int = 3, n_val: int = 1, size: int = 32) -> Path:
    """A tiny VOC folder of 3 classes: PNG images, palette PNG masks holding 0, 1, 2 and 255."""
    import numpy as np
    from PIL import Image

    from mobile_seg.data.palette import save_index_png
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{k}" for k in range(n_train + n_val)]
    for k, id_ in enumerate(ids):
        Image.fromarray(np.full((size, size, 3), 40 * k, np.uint8)).save(root / "JPEGImages" / f"{id_}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 3:] = 1
        mask[:, 2 * size // 3:] = 2
        mask[0] = 255
        save_index_png(mask, root / "SegmentationClass" / f"{id_}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[n_train:]) + "\n")
    return root
