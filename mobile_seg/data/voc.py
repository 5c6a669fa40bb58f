"""Find a dataset's images, masks and split files: a VOC 2012 folder or --images/--masks dirs.

VOC layout (what DeepLab's build_voc2012_data.py consumed)::

    DATASET/JPEGImages/<id>.jpg
    DATASET/SegmentationClass/<id>.png
    DATASET/ImageSets/Segmentation/<split>.txt   one id a line
    DATASET/SegmentationSoft/<id>.png            optional: a teacher's person probability
                                                 (8-bit grey, p x 255; `mobile-seg label`)

With `images=` and `masks=` the pairs are matched by file stem; split files are taken from
DATASET/ImageSets/Segmentation when a DATASET is given too, otherwise every image with a
mask forms one split named `all` (also the fallback, flagged by check, for a VOC folder
without split files). Discovery only gathers facts; `check` judges them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mobile_seg.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # preference order when stems collide
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")  # .jpg is flagged by check
SPLIT_DIR = Path("ImageSets") / "Segmentation"
SOFT_DIR = "SegmentationSoft"
ALL_SPLIT = "all"


@dataclass(frozen=True)
class Source:
    """Everything found on disk for one dataset; nothing decoded yet."""

    name: str
    root: Path | None                       # DATASET folder, None with only --images/--masks
    images_dir: Path
    masks_dir: Path
    images: dict[str, Path]                 # stem → image file
    masks: dict[str, Path]                  # stem → mask file
    splits: dict[str, list[str]]            # split name → ids, file order, as listed
    split_files: dict[str, Path] = field(default_factory=dict)  # empty when splits are implied
    split_dir: Path | None = None           # where split files belong (None: plain folders)
    soft: dict[str, Path] = field(default_factory=dict)  # stem → soft label (SegmentationSoft/)

    @property
    def listed_ids(self) -> list[str]:
        """Every id in any split, first occurrence order, without repeats."""
        return list(dict.fromkeys(i for ids in self.splits.values() for i in ids))

    def image_path(self, id_: str) -> Path:
        """The image file of `id_`, or where it was expected."""
        return self.images.get(id_, self.images_dir / f"{id_}.jpg")

    def mask_path(self, id_: str) -> Path:
        """The mask file of `id_`, or where it was expected."""
        return self.masks.get(id_, self.masks_dir / f"{id_}.png")


def discover(dataset: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
             masks: str | os.PathLike | None = None) -> Source:
    """Find images, masks and splits of a VOC folder, or of --images/--masks dirs.

    Raises DatasetError when the folders themselves are missing (not a dataset at all).
    """
    if (images is None) != (masks is None):
        raise DatasetError("--images and --masks go together: give both or neither")
    root = None if dataset is None else Path(dataset)
    if root is None and images is None:
        raise DatasetError("give a DATASET folder, or --images DIR --masks DIR")
    if root is not None and not root.is_dir():
        raise DatasetError("dataset folder not found", root)
    images_dir = Path(images) if images is not None else root / "JPEGImages"
    masks_dir = Path(masks) if masks is not None else root / "SegmentationClass"
    for d, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not d.is_dir():
            hint = "" if images is not None else " (expected VOC layout; or pass --images DIR --masks DIR)"
            raise DatasetError(f"{what} folder not found{hint}", d)
    found_images = _by_stem(images_dir, IMAGE_SUFFIXES)
    found_masks = _by_stem(masks_dir, MASK_SUFFIXES)

    split_dir = None if root is None else root / SPLIT_DIR
    split_files = {} if split_dir is None or not split_dir.is_dir() else {
        p.stem: p for p in sorted(split_dir.glob("*.txt"))}
    if split_files:
        splits = {name: read_split_file(path) for name, path in split_files.items()}
    else:  # one implied split; check reports it as a problem for a VOC folder
        splits = {ALL_SPLIT: sorted(found_images)}
        split_dir = None if images is not None else split_dir
    name = (root if root is not None else images_dir.parent).resolve().name
    soft_dir = None if root is None else root / SOFT_DIR
    soft = _by_stem(soft_dir, (".png",)) if soft_dir is not None and soft_dir.is_dir() else {}
    return Source(name=name, root=root, images_dir=images_dir, masks_dir=masks_dir,
                  images=found_images, masks=found_masks, splits=splits,
                  split_files=split_files, split_dir=split_dir, soft=soft)


def read_split_file(path: Path) -> list[str]:
    """Ids of a split file: first token of each non-blank line (a path is reduced to its stem)."""
    ids = []
    for line in path.read_text(errors="replace").splitlines():
        token = line.split()[0] if line.strip() else ""
        if token and not token.startswith("#"):
            is_path = "/" in token or Path(token).suffix.lower() in IMAGE_SUFFIXES + MASK_SUFFIXES
            ids.append(Path(token).stem if is_path else token)
    return ids


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    rank = {s: i for i, s in enumerate(suffixes)}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        s = p.suffix.lower()
        if s in rank and p.is_file() and not p.name.startswith("."):
            old = found.get(p.stem)
            if old is None or rank[s] < rank[old.suffix.lower()]:
                found[p.stem] = p
    return found
