"""`mobile-seg label`: a teacher .tflite writes soft person labels for a VOC dataset, a
folder of images or a video, into a VOC-layout folder that `data build` takes.

Output folder::

    OUT/JPEGImages/<id>.jpg            the images (hard links where possible, else copies;
                                       video frames as JPEG)
    OUT/SegmentationSoft/<id>.png      teacher person probability, 8-bit grey (p × 255)
    OUT/SegmentationClass/<id>.png     the source's own mask when it has one (bytes
                                       unchanged), otherwise the teacher's hard mask:
                                       0 / 1, and 255 (ignore) where |p − 0.5| < band / 2
    OUT/ImageSets/Segmentation/*.txt   the source's splits, or `train` = every id (with
                                       `val_fraction`: `train` and a held-out `val`)
    OUT/label.json                     teacher, options, counts, time

Every file is written atomically; a rerun skips the ids that are complete, so a stopped
run resumes. With a boxes file (`{"id": [[x0, y0, x1, y1], ...]}`, e.g. VOC person boxes)
the labels are 0 outside the boxes grown by `box_margin` of their size: the teacher may
mark only what an annotator boxed as a person.

A source without splits of its own can keep a share of its ids out of training
(`val_fraction`), to judge a model trained on the rest with `compare`: images by a hash of
their id (stable across reruns and added images), a video by its last frames (one block, so
that neighbouring frames do not land on both sides).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mobile_seg.data.voc import SOFT_DIR, SPLIT_DIR, read_split_file
from mobile_seg.errors import ConfigError, DatasetError
from mobile_seg.io_utils import atomic_path, write_bytes_atomic, write_json_atomic
from mobile_seg.spec import IGNORE_LABEL

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
MASK_DIR = "SegmentationClass"
IMAGE_DIR = "JPEGImages"


@dataclass(frozen=True)
class LabelConfig:
    """How a teacher labels a source.

    Args:
        flip: average the teacher's probability over the image and its mirror image.
        hard: write the teacher's hard masks for ids that have no mask of their own.
        band: width of the ignore band around p = 0.5 in those hard masks (0 = none).
        boxes: JSON file of person boxes per id; labels are 0 outside them.
        box_margin: boxes grow by this fraction of their width/height on every side.
        every: video input: label every N-th frame.
        max_side: video frames are downscaled so the longer side is at most this.
        threads: interpreter threads (None = runtime default).
    """

    flip: bool = False
    hard: bool = True
    band: float = 0.2
    boxes: str | None = None
    box_margin: float = 0.1
    every: int = 5
    max_side: int = 640
    threads: int | None = None

    def __post_init__(self):
        if not 0 <= self.band < 1:
            raise ConfigError(f"--band must be in [0, 1), got {self.band}")
        if self.every < 1:
            raise ConfigError(f"--every must be at least 1, got {self.every}")
        if self.max_side < 16:
            raise ConfigError(f"--max-side must be at least 16, got {self.max_side}")
        if self.box_margin < 0:
            raise ConfigError(f"--box-margin must be >= 0, got {self.box_margin}")


@dataclass
class LabelResult:
    out: Path
    labelled: int       # ids the teacher ran on in this call
    skipped: int        # ids already complete (resumed)
    total: int
    seconds: float
    summary: dict

    def to_dict(self) -> dict:
        return {"out": str(self.out), "labelled": self.labelled, "skipped": self.skipped,
                "total": self.total, "seconds": round(self.seconds, 1), **self.summary}


# --- sources ------------------------------------------------------------------------------

@dataclass
class _Item:
    id: str
    image: Path | None          # a file, or None for a video frame (index in `frame`)
    mask: Path | None           # the source's own mask, if any
    frame: int = -1


def list_source(source: str | os.PathLike, every: int = 5) -> tuple[str, list[_Item], dict[str, list[str]]]:
    """(kind, items, splits) of a VOC folder, a folder of images or a video file."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            raise DatasetError(f"not a folder or a video ({', '.join(VIDEO_SUFFIXES)})", source)
        n = _count_frames(source)
        items = [_Item(f"{source.stem}_{i:06d}", None, None, i) for i in range(0, n, every)]
        if not items:
            raise DatasetError("cannot read any frame from the video", source)
        return "video", items, {"train": [it.id for it in items]}
    if not source.is_dir():
        raise DatasetError("not found", source)
    image_dir = source / IMAGE_DIR if (source / IMAGE_DIR).is_dir() else source
    images = {p.stem: p for p in sorted(image_dir.iterdir())
              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")}
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)})", image_dir)
    splits: dict[str, list[str]] = {}
    if (source / SPLIT_DIR).is_dir():
        for f in sorted((source / SPLIT_DIR).glob("*.txt")):
            splits[f.stem] = read_split_file(f)
    if not splits:
        splits = {"train": sorted(images)}
    missing = [i for ids in splits.values() for i in ids if i not in images]
    if missing:
        raise DatasetError(f"{len(missing)} listed id(s) have no image, e.g. {missing[0]}", source / SPLIT_DIR)
    mask_dir = source / MASK_DIR
    ids = list(dict.fromkeys(i for s in splits.values() for i in s))
    items = [_Item(i, images[i], mask_dir / f"{i}.png" if (mask_dir / f"{i}.png").is_file() else None)
             for i in ids]
    return ("voc" if image_dir != source else "images"), items, splits


def hold_out(kind: str, splits: dict[str, list[str]], fraction: float,
             source: Path) -> dict[str, list[str]]:
    """{"train", "val"} from a source's one `train` list: about `fraction` of the ids in val.

    Images go to val when a hash of their id falls below `fraction` (the same id always
    lands on the same side); a video's val is its last frames, one block.
    """
    if set(splits) != {"train"}:
        raise ConfigError(f"{source}: has splits of its own ({', '.join(sorted(splits))}); "
                          f"--val-fraction is for sources without")
    ids = splits["train"]
    if kind == "video":
        n_val = max(1, round(fraction * len(ids)))
        if n_val >= len(ids):
            raise ConfigError(f"{source}: {len(ids)} labelled frame(s) are too few to hold out "
                              f"{fraction:g} of them")
        return {"train": ids[:-n_val], "val": ids[-n_val:]}
    val = {i for i in ids if _id_hash(i) < fraction}
    if not val or len(val) == len(ids):
        raise ConfigError(f"{source}: holding out {fraction:g} of {len(ids)} image(s) by id leaves "
                          f"{'val' if not val else 'train'} empty; choose another --val-fraction")
    return {"train": [i for i in ids if i not in val], "val": [i for i in ids if i in val]}


def _id_hash(image_id: str) -> float:
    """A stable number in [0, 1) for an id (md5 of its UTF-8 bytes)."""
    return int(hashlib.md5(image_id.encode()).hexdigest()[:8], 16) / 2 ** 32


def _count_frames(path: Path) -> int:
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DatasetError("cannot open the video", path)
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def _video_frames(path: Path, wanted: set[int], max_side: int):
    """Yield (index, RGB frame) of the wanted frame indices, in order."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        index = -1
        last = max(wanted) if wanted else -1
        while index < last and cap.grab():
            index += 1
            if index not in wanted:
                continue
            ok, frame = cap.retrieve()
            if not ok:
                raise DatasetError(f"cannot decode frame {index}", path)
            yield index, cv2.cvtColor(_fit(frame, max_side), cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


# --- the teacher --------------------------------------------------------------------------

def teacher_probability(model, image_rgb: np.ndarray, flip: bool = False) -> np.ndarray:
    """float32 [H, W] person probability of a teacher at the image's own resolution."""
    import cv2
    h, w = image_rgb.shape[:2]

    def once(im):
        p = model.person_probability(im)
        return cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) if p.shape != (h, w) else p

    p = once(image_rgb)
    if flip:
        p = 0.5 * (p + once(np.ascontiguousarray(image_rgb[:, ::-1]))[:, ::-1])
    return np.clip(p, 0.0, 1.0).astype(np.float32)


def box_mask(shape: tuple[int, int], boxes: list, margin: float) -> np.ndarray:
    """bool [H, W]: inside any (x0, y0, x1, y1) box grown by `margin` of its size."""
    h, w = shape
    inside = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        c0, r0 = max(int(np.floor(x0 - mx)), 0), max(int(np.floor(y0 - my)), 0)
        c1, r1 = min(int(np.ceil(x1 + mx)), w), min(int(np.ceil(y1 + my)), h)
        inside[r0:r1, c0:c1] = True
    return inside


def hard_mask(prob: np.ndarray, band: float) -> np.ndarray:
    """uint8 0/1 mask of p ≥ 0.5, with IGNORE_LABEL where |p − 0.5| < band / 2."""
    mask = (prob >= 0.5).astype(np.uint8)
    if band > 0:
        mask[np.abs(prob - 0.5) < band / 2] = IGNORE_LABEL
    return mask


def soft_png(prob: np.ndarray) -> bytes:
    """8-bit grey PNG of a probability map (p × 255, rounded)."""
    from mobile_seg.data.tfrecords import encode_png
    return encode_png(np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8))


# --- the command --------------------------------------------------------------------------

def label(teacher: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
          config: LabelConfig = LabelConfig(), *, val_fraction: float = 0.0, progress: bool = True,
          stream=None) -> LabelResult:
    """Label `source` with `teacher` into `out` (see the module doc); resumes a stopped run.

    `val_fraction` > 0 splits a source without splits of its own into `train` and `val`.
    """
    from mobile_seg.tflite_model import TFLiteModel
    start = time.perf_counter()
    out = Path(out)
    source = Path(source)
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if out.resolve() == source.resolve():
        raise ConfigError(f"{out}: --out must differ from the source folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    model = TFLiteModel(teacher, num_threads=config.threads)
    model.check_segmentation_output()
    kind, items, splits = list_source(source, config.every)
    if val_fraction > 0:
        splits = hold_out(kind, splits, val_fraction, source)
    boxes = _read_boxes(config.boxes) if config.boxes else None
    done_before = _previous_run(out, teacher, config, source)

    for d in (IMAGE_DIR, SOFT_DIR, MASK_DIR, SPLIT_DIR):
        (out / d).mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    todo = [it for it in items if not _complete(out, it, config)]
    stats = {"soft_mean": [], "band": [], "hard": 0}
    bar = None
    if progress:
        from tqdm import tqdm
        stream = stream or sys.stderr
        bar = tqdm(total=len(items), initial=len(items) - len(todo), unit="img", desc="label",
                   file=stream, dynamic_ncols=True, mininterval=0.5 if stream.isatty() else 15.0)
    try:
        for it, rgb in _images(source, kind, todo, config):
            prob = teacher_probability(model, rgb, config.flip)
            if boxes is not None and it.id in boxes:
                prob = np.where(box_mask(prob.shape, boxes[it.id], config.box_margin), prob, 0.0)
            _write_image(out / IMAGE_DIR / f"{it.id}.jpg", it, rgb)
            if it.mask is not None:
                _link_or_copy(it.mask, out / MASK_DIR / f"{it.id}.png")
            elif config.hard:
                from mobile_seg.data.tfrecords import encode_png
                mask = hard_mask(prob, config.band)
                stats["band"].append(float(np.mean(mask == IGNORE_LABEL)))
                stats["hard"] += 1
                write_bytes_atomic(out / MASK_DIR / f"{it.id}.png", encode_png(mask))
            write_bytes_atomic(out / SOFT_DIR / f"{it.id}.png", soft_png(prob))  # last: marks done
            stats["soft_mean"].append(float(prob.mean()))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for stale in set(p.stem for p in (out / SPLIT_DIR).glob("*.txt")) - set(splits):
        (out / SPLIT_DIR / f"{stale}.txt").unlink()     # a rerun with another val_fraction
    for name, ids in splits.items():
        with atomic_path(out / SPLIT_DIR / f"{name}.txt") as tmp:
            tmp.write_text("".join(f"{i}\n" for i in ids))
    seconds = time.perf_counter() - start
    summary = {
        "format": "mobile-seg-labels/1", "teacher": str(Path(teacher).resolve()),
        "teacher_sha256": hashlib.sha256(model.content).hexdigest(),
        "source": str(source.resolve()), "kind": kind, "config": asdict(config),
        "ids": len(items), "splits": {k: len(v) for k, v in splits.items()},
        "val_fraction": val_fraction,
        "own_masks": sum(it.mask is not None for it in items),
        "seconds": round(seconds + done_before.get("seconds", 0.0), 1),
    }
    if stats["soft_mean"]:
        summary["mean_person_fraction_this_call"] = round(float(np.mean(stats["soft_mean"])), 4)
    if stats["band"]:
        summary["mean_ignore_band_fraction_this_call"] = round(float(np.mean(stats["band"])), 4)
    write_json_atomic(out / "label.json", summary)
    return LabelResult(out, len(todo), len(items) - len(todo), len(items), seconds, summary)


def _previous_run(out: Path, teacher, config: LabelConfig, source: Path) -> dict:
    """label.json of an earlier run into `out`; ConfigError if it used another teacher/options."""
    path = out / "label.json"
    if not path.is_file():
        return {}
    try:
        prev = json.loads(path.read_text())
    except ValueError:
        return {}
    if prev.get("teacher") != str(Path(teacher).resolve()) or prev.get("config") != asdict(config) \
            or prev.get("source") != str(source.resolve()):
        raise ConfigError(f"{out}: holds labels of another teacher, source or options "
                          f"({prev.get('teacher')}); use another --out or delete it")
    return prev


def _complete(out: Path, it: _Item, config: LabelConfig) -> bool:
    if not (out / SOFT_DIR / f"{it.id}.png").is_file() or not (out / IMAGE_DIR / f"{it.id}.jpg").is_file():
        return False
    return (it.mask is None and not config.hard) or (out / MASK_DIR / f"{it.id}.png").is_file()


def _images(source: Path, kind: str, items: list[_Item], config: LabelConfig):
    """Yield (item, RGB uint8 image) for the items, decoding each once."""
    if kind == "video":
        by_frame = {it.frame: it for it in items}
        for index, rgb in _video_frames(source, set(by_frame), config.max_side):
            yield by_frame[index], rgb
        return
    from PIL import Image
    for it in items:
        try:
            with Image.open(it.image) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise DatasetError(f"cannot read image ({e})", it.image) from None
        yield it, rgb


def _write_image(dest: Path, it: _Item, rgb: np.ndarray) -> None:
    if dest.is_file():
        return
    if it.image is not None and it.image.suffix.lower() in (".jpg", ".jpeg"):
        _link_or_copy(it.image, dest)
        return
    import cv2
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise DatasetError("cannot encode JPEG", dest)
    write_bytes_atomic(dest, buf.tobytes())


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link `src` to `dest` (same file system), else copy; atomic either way."""
    if dest.is_file():
        return
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _remove_stale_temps(out: Path) -> None:
    """Temp files of a killed run (atomic_path's `.NAME.*.tmp`)."""
    for d in (IMAGE_DIR, SOFT_DIR, MASK_DIR):
        for p in (out / d).glob(".*.tmp"):
            p.unlink(missing_ok=True)


def _read_boxes(path: str | os.PathLike) -> dict[str, list]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: --boxes file not found")
    try:
        boxes = json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path}: --boxes is not valid JSON ({e})") from None
    if not isinstance(boxes, dict) or not all(
            isinstance(v, list) and all(isinstance(b, list) and len(b) == 4 for b in v) for v in boxes.values()):
        raise ConfigError(f"{path}: --boxes must map each id to a list of [x0, y0, x1, y1] boxes")
    return boxes
