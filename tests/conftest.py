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
