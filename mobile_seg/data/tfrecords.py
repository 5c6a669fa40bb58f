"""`data build`: a checked dataset → sharded TFRecords per split + descriptor.json, atomically.

Each record holds the image's original bytes (JPEG/PNG as on disk; other formats or colour
modes are re-encoded losslessly as RGB PNG) and the mask as a single-channel PNG of raw
class indices, after --colour-map / --binary conversion. Palette PNG masks are always
re-encoded: TensorFlow's PNG decoder expands palettes to colours. A soft person label
(`SegmentationSoft/<id>.png`, written by `mobile-seg label`) is stored as `soft/encoded`.

The whole output is written in a temp folder beside `out` and renamed at the end: an
interrupted build leaves no folder a reader would take as complete.
"""
from __future__ import annotations

import collections
import io
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from mobile_seg.data import DESCRIPTOR_FORMAT, IGNORE_LABEL
from mobile_seg.data.check import CheckReport, MaskOptions, Problem, check_source, mask_options, read_mask
from mobile_seg.data.palette import VOC_PALETTE
from mobile_seg.data.voc import Source, discover
from mobile_seg.errors import ConfigError, DatasetError, DatasetProblems
from mobile_seg.io_utils import atomic_dir, check_output_path, write_json_atomic
from mobile_seg.locks import folder_lock

SHARD_BYTES = 64 << 20  # --shards auto: about this much image data per shard


@dataclass
class BuildResult:
    """What `build_dataset` wrote and what it left out."""

    out: Path
    descriptor: dict
    skipped: list[Problem]      # the problems of the pairs left out by --skip-bad
    report: CheckReport
    seconds: float


def build_dataset(dataset: str | os.PathLike | None, out: str | os.PathLike, *, images=None,
                  masks=None, num_classes: int | None = None,
                  class_names: str | Sequence[str] | None = None, ignore_label: int = IGNORE_LABEL,
                  colour_map: str | os.PathLike | None = None, binary: bool = False,
                  skip_bad: bool = False, shards: int | str = "auto",
                  workers: int | None = None) -> BuildResult:
    """Check the dataset, then write `out/<split>-NNNNN-of-NNNNN.tfrecord` + descriptor.json.

    Raises DatasetProblems (exit 2) when the check finds problems, unless `skip_bad`, which
    leaves the bad pairs (and empty splits) out and reports them in `BuildResult.skipped`.
    A split file "trainval" listing exactly train + val reuses their shards. Classes as in
    `check.mask_options`: the descriptor's num_classes and class_names are the check's.
    """
    start = time.perf_counter()
    options = mask_options(num_classes, ignore_label, colour_map, binary, class_names, root=dataset)
    n_shards = _parse_shards(shards)
    out = Path(out)
    check_output_path(out, "dir")
    _refuse_foreign_dir(out)
    source = discover(dataset, images, masks)
    report = check_source(source, options, workers=workers)
    if not report.ok and not skip_bad:
        where = dataset if dataset is not None else images
        args = " ".join(str(a) for a in (dataset, images and f"--images {images}",
                                          masks and f"--masks {masks}") if a)
        raise DatasetProblems(
            f"refusing to build: {len(report.problems)} problem(s) in the dataset; run "
            f"`mobile-seg data check {args}` (same options) to list them, or pass --skip-bad "
            "to leave the bad pairs out", where)
    bad = report.bad_ids
    splits = {s: [i for i in dict.fromkeys(ids) if i not in bad] for s, ids in source.splits.items()}
    splits = {s: ids for s, ids in splits.items() if ids}
    if not splits:
        raise DatasetProblems("nothing to build: no split has a usable pair", dataset)

    workers = workers or min(8, os.cpu_count() or 1)
    written: dict[str, dict] = {}
    # One build per folder; temps of a killed build (SIGKILL) go before this one starts.
    with folder_lock(out, "mobile-seg data build"), atomic_dir(out, clean_stale=True) as tmp, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for split in sorted(splits, key=lambda s: s == "trainval"):  # trainval after its parts
            ids = splits[split]
            parts = _union_of_other_splits(split, ids, splits)
            names = ([n for p in parts for n in written[p]["shards"]] if parts else
                     _write_split(tmp, split, ids, source, options, n_shards, pool))
            written[split] = {"num_examples": len(ids), "shards": names}
        descriptor = make_descriptor(source, options, colour_map,
                                     {s: written[s] for s in splits}, report)
        write_json_atomic(tmp / "descriptor.json", descriptor)
        _set_default_modes(tmp)
    return BuildResult(out, descriptor, list(report.problems), report, time.perf_counter() - start)


def make_descriptor(source: Source, options: MaskOptions, colour_map, splits: dict,
                    report: CheckReport) -> dict:
    """descriptor.json content (see docs/architecture.md); classes as the check settled them."""
    return {
        "format": DESCRIPTOR_FORMAT,
        "name": source.name,
        "source": str(Path(source.root or source.images_dir).resolve()),
        "num_classes": report.num_classes,
        "ignore_label": options.ignore_label,
        "class_names": list(report.class_names),
        "palette": VOC_PALETTE[: report.num_classes].tolist(),
        "binary": options.binary,
        "colour_map": None if colour_map is None else str(colour_map),
        "splits": splits,
        "soft_labels": report.soft_labels,
        "skipped": sorted(report.bad_ids),
    }


def encode_example(id_: str, image_path: Path, mask_path: Path, options: MaskOptions,
                   soft_path: Path | None = None) -> bytes:
    """One serialized tf.train.Example: original image bytes + PNG of the class indices
    (+ the soft person label's PNG bytes as they are on disk, when there is one)."""
    data = image_path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        fmt, (width, height) = im.format, im.size
        if fmt not in ("JPEG", "PNG") or im.mode not in ("RGB", "L"):
            data, fmt = encode_png(np.asarray(im.convert("RGB"))), "PNG"
    mask = read_mask(mask_path, options)
    if mask.shape != (height, width):  # check_source rejects these; guard against misuse
        raise DatasetError(f"mask size {mask.shape} differs from image {(height, width)}", mask_path)
    feature = {
        "image/encoded": _bytes(data),
        "image/format": _bytes(fmt.lower().encode()),
        "image/filename": _bytes(id_.encode()),
        "image/height": _int(height),
        "image/width": _int(width),
        "mask/encoded": _bytes(encode_png(mask.astype(np.uint8))),
        "mask/format": _bytes(b"png"),
    }
    if soft_path is not None:
        feature["soft/encoded"] = _bytes(soft_path.read_bytes())  # checked: 8-bit grey, image size
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HxW (grey) or HxWx3 (RGB) array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _write_split(folder: Path, split: str, ids: list[str], source: Source, options: MaskOptions,
                 n_shards: int | None, pool: ThreadPoolExecutor) -> list[str]:
    if n_shards is None:
        size = sum(source.images[i].stat().st_size for i in ids)
        n_shards = math.ceil(size / SHARD_BYTES)
    n = max(1, min(n_shards, len(ids)))
    names = [f"{split}-{k:05d}-of-{n:05d}.tfrecord" for k in range(n)]
    writers = [tf.io.TFRecordWriter(str(folder / name)) for name in names]
    try:
        records = _ordered_map(pool, lambda i: encode_example(i, source.images[i], source.masks[i], options,
                                                   source.soft.get(i)), ids)
        for k, record in enumerate(records):
            writers[k % n].write(record)  # round robin: every shard spans the whole list
    finally:
        for w in writers:
            w.close()
    return names


def _ordered_map(pool: ThreadPoolExecutor, fn, items: list, window: int = 64):
    """pool.map with at most `window` results in flight (memory stays flat on big datasets)."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # on an error, do not finish the queued work before giving up
        for future in pending:
            future.cancel()


def _union_of_other_splits(split: str, ids: list[str], splits: dict[str, list[str]]) -> list[str]:
    """["train", "val"] when `split` is trainval and lists exactly train + val (disjoint)."""
    if split != "trainval" or "train" not in splits or "val" not in splits:
        return []
    train, val = splits["train"], splits["val"]
    if set(train) & set(val) or sorted(train + val) != sorted(ids):
        return []
    return ["train", "val"]


def _parse_shards(shards: int | str) -> int | None:
    if str(shards) == "auto":
        return None
    try:
        n = int(shards)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--shards must be a positive number or 'auto', got {shards!r}")
    return n


def _refuse_foreign_dir(out: Path) -> None:
    """`out` is replaced at the end: only allow that for an earlier build or an empty folder."""
    if out.exists() and not (out.is_dir() and ((out / "descriptor.json").exists()
                                                or not any(out.iterdir()))):
        raise DatasetError("output exists and is not a built dataset (no descriptor.json); "
                           "refusing to replace it", out)


def _set_default_modes(folder: Path) -> None:
    """Temp files/dirs are created private (0600/0700); give the output the usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for p in folder.iterdir():
        os.chmod(p, 0o666 & ~umask)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
