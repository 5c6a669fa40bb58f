"""tf.data input pipelines over a built dataset (`data build --out DIR`).

Train: decode → random scale (bilinear image, nearest mask) → pad to the crop size (image
with the mean pixel, i.e. 0.0 once normalised; mask with the ignore label), the image placed
at a random offset → random crop → random horizontal flip → optional photometric jitter →
normalise to [-1, 1]. Every random draw is a stateless op seeded by (seed, element index),
so a seed fixes the whole stream of batches, parallel map included.

Eval: no randomness; `resize="pad"` (default) scales the image so its longer side fits
`size` (aspect kept) and pads bottom/right (mean / ignore label); `resize="stretch"`
resizes to `size` ignoring aspect (what the exported TFLite models' `"resize": "stretch"`
runtime does).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from mobile_seg.data import DESCRIPTOR_FORMAT
from mobile_seg.errors import DatasetError

AUTOTUNE = tf.data.AUTOTUNE
from mobile_seg.spec import MEAN  # noqa: E402 (one definition, in spec); (pixel - MEAN) / MEAN → [-1, 1]; padding with MEAN gives exactly 0.0

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "mask/encoded": tf.io.FixedLenFeature([], tf.string),
    "soft/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def read_descriptor(built_dir: str | os.PathLike) -> dict:
    """descriptor.json of a built dataset, validated (shard files exist); DatasetError if not."""
    path = Path(built_dir) / "descriptor.json"
    if not path.is_file():
        raise DatasetError("not a built dataset (no descriptor.json; make one with "
                           "`mobile-seg data build DATASET --out DIR`)", built_dir)
    try:
        desc = json.loads(path.read_text())
    except ValueError as e:
        raise DatasetError(f"descriptor is not valid JSON ({e})", path) from None
    if not isinstance(desc, dict) or desc.get("format") != DESCRIPTOR_FORMAT:
        raise DatasetError(f"descriptor format is not {DESCRIPTOR_FORMAT}", path)
    for key in ("num_classes", "ignore_label", "class_names", "splits"):
        if key not in desc:
            raise DatasetError(f"descriptor lacks '{key}'", path)
    for split, info in desc["splits"].items():
        for name in info.get("shards", []):
            if not (Path(built_dir) / name).is_file():
                raise DatasetError(f"shard of split '{split}' is missing", Path(built_dir) / name)
    return desc


def split_files(built_dir: str | os.PathLike, split: str) -> tuple[list[str], dict]:
    """(shard paths of `split`, descriptor); DatasetError naming the splits there are."""
    desc = read_descriptor(built_dir)
    if split not in desc["splits"]:
        raise DatasetError(f"no split '{split}' (has: {', '.join(desc['splits'])})", built_dir)
    return [str(Path(built_dir) / s) for s in desc["splits"][split]["shards"]], desc


def decode_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """{"id": string, "image": uint8 [H, W, 3], "mask": uint8 [H, W], "soft": uint8 [H, W],
    "has_soft": bool} of one record; "soft" is the teacher's person probability × 255
    (zeros, with has_soft False, for a record without one)."""
    f = tf.io.parse_single_example(serialized, _FEATURES)
    image = tf.io.decode_image(f["image/encoded"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    mask = tf.io.decode_png(f["mask/encoded"], channels=1)[..., 0]
    has_soft = tf.strings.length(f["soft/encoded"]) > 0
    soft = tf.cond(has_soft, lambda: tf.io.decode_png(f["soft/encoded"], channels=1)[..., 0],
                   lambda: tf.zeros_like(mask))
    return {"id": f["image/filename"], "image": image, "mask": mask, "soft": soft, "has_soft": has_soft}


def train_dataset(built_dir: str | os.PathLike, split: str, crop_size: int | tuple[int, int],
                  batch_size: int, *, seed: int = 0, min_scale: float = 0.5,
                  max_scale: float = 2.0, flip: bool = True, jitter: bool = False,
                  repeat: bool = True, shuffle_buffer: int = 1000) -> tf.data.Dataset:
    """Augmented batches `(images float32 [B,h,w,3] in [-1,1], masks int32 [B,h,w])`.

    Batches are full (drop_remainder) so shapes are static. The same `seed` gives the same
    batches; each epoch is reshuffled (deterministically).
    """
    files, desc = split_files(built_dir, split)
    crop = _hw(crop_size)
    ignore = int(desc["ignore_label"])
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 4) if len(files) > 1 else None)
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def augment(index, serialized):
        ex = decode_record(serialized)
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), index]), num=9)
        return augment_example(ex["image"], ex["mask"], seeds, crop, ignore=ignore,
                               min_scale=min_scale, max_scale=max_scale, flip=flip, jitter=jitter)

    ds = ds.enumerate().map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(built_dir: str | os.PathLike, split: str, size: int | tuple[int, int],
                 batch_size: int = 1, *, resize: str = "pad") -> tf.data.Dataset:
    """Fixed-size `(images, masks)` batches in file order, no randomness (see module doc)."""
    if resize not in ("pad", "stretch"):
        raise ValueError(f"resize must be 'pad' or 'stretch', got {resize!r}")
    files, desc = split_files(built_dir, split)
    hw, ignore = _hw(size), int(desc["ignore_label"])

    def prepare(serialized):
        ex = decode_record(serialized)
        return resize_example(ex["image"], ex["mask"], hw, resize=resize, ignore=ignore)

    ds = tf.data.TFRecordDataset(files).map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def iterate_examples(built_dir: str | os.PathLike, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield `(id, image uint8 HxWx3, mask uint8 HxW)` at original resolution, in file order."""
    files, _ = split_files(built_dir, split)
    ds = tf.data.TFRecordDataset(files).map(decode_record, num_parallel_calls=AUTOTUNE,
                                            deterministic=True).prefetch(AUTOTUNE)
    for ex in ds.as_numpy_iterator():
        yield ex["id"].decode(), ex["image"], ex["mask"]


def augment_example(image: tf.Tensor, mask: tf.Tensor, seeds: tf.Tensor, crop: tuple[int, int], *,
                    ignore: int, min_scale: float = 0.5, max_scale: float = 2.0,
                    flip: bool = True, jitter: bool = False, soft: tf.Tensor | None = None,
                    has_soft: tf.Tensor | None = None) -> tuple[tf.Tensor, ...]:
    """One training pair: uint8 image [H,W,3] + mask [H,W] → float32 [-1,1] crop + int32 crop.

    `seeds` is int [9, 2] (from stateless_split); each random decision uses its own row.
    With `soft` (uint8 [H,W] person probability × 255) it goes through the same geometry as
    the image (bilinear) and two more tensors come back: the soft target float32 [h,w] in
    [0, 1] and its weight float32 [h,w] (1 inside the image when `has_soft`, else 0).
    """
    ch, cw = crop
    if soft is not None:  # the soft label rides along as a 4th image channel
        image = tf.concat([tf.cast(image, tf.uint8), tf.cast(soft, tf.uint8)[..., None]], axis=-1)
    # random scale
    scale = tf.random.stateless_uniform([], seeds[0], min_scale, max_scale)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), 1)
    # pad up to the crop size (the image at a random place inside the padding), random crop
    pad_h, pad_w = tf.maximum(ch - new_hw[0], 0), tf.maximum(cw - new_hw[1], 0)
    top = _randint(seeds[1], pad_h)
    left = _randint(seeds[2], pad_w)
    y = _randint(seeds[3], new_hw[0] + pad_h - ch)
    x = _randint(seeds[4], new_hw[1] + pad_w - cw)
    image, mask, inside = resize_crop(image, mask, new_hw, (y - top, x - left), crop, ignore=ignore)
    target = weight = None
    if soft is not None:
        target = image[..., 3] / 255.0
        weight = tf.cast(inside, tf.float32) * tf.cast(has_soft if has_soft is not None else True, tf.float32)
        image = image[..., :3]
    if jitter:  # on the crop (cheap), then the padding is put back to the mean
        image = tf.where(inside[..., None], photometric_jitter(image, seeds[6:9]), MEAN)
    if flip:
        coin = tf.random.stateless_uniform([], seeds[5]) < 0.5
        image = tf.where(coin, tf.reverse(image, [1]), image)
        mask = tf.where(coin, tf.reverse(mask, [1]), mask)
        if soft is not None:
            target = tf.where(coin, tf.reverse(target, [1]), target)
            weight = tf.where(coin, tf.reverse(weight, [1]), weight)
    image = (image - MEAN) / MEAN
    image.set_shape([ch, cw, 3])
    mask = tf.cast(mask, tf.int32)
    mask.set_shape([ch, cw])
    if soft is None:
        return image, mask
    target.set_shape([ch, cw])
    weight.set_shape([ch, cw])
    return image, mask, target, weight


def resize_crop(image: tf.Tensor, mask: tf.Tensor, new_hw: tf.Tensor, start: tuple, crop: tuple[int, int],
                *, ignore: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Crop `crop` at `start` (y, x) of the image resized to `new_hw`, computing only the crop.

    Equals `tf.image.resize` (bilinear image, nearest mask, half-pixel centres) followed by
    slicing, but costs O(crop) instead of O(resized image). Outside the resized image the
    image is MEAN and the mask `ignore`. Returns (image float32, mask uint8, inside bool).
    """
    in_hw = tf.shape(image)[:2]
    r0, r1, r_frac, r_near, r_in = _sample_positions(start[0], crop[0], in_hw[0], new_hw[0])
    c0, c1, c_frac, c_near, c_in = _sample_positions(start[1], crop[1], in_hw[1], new_hw[1])
    top, bottom = tf.gather(image, r0), tf.gather(image, r1)             # [ch, W, 3] uint8
    top, bottom = tf.cast(top, tf.float32), tf.cast(bottom, tf.float32)
    rows = top + (bottom - top) * r_frac[:, None, None]
    left, right = tf.gather(rows, c0, axis=1), tf.gather(rows, c1, axis=1)  # [ch, cw, 3]
    resized = left + (right - left) * c_frac[None, :, None]
    inside = r_in[:, None] & c_in[None, :]
    image = tf.where(inside[..., None], resized, MEAN)
    mask = tf.gather(tf.gather(mask, r_near), c_near, axis=1)
    mask = tf.where(inside, mask, tf.cast(ignore, mask.dtype))
    return image, mask, inside


def _sample_positions(start, length: int, in_size, out_size):
    """Source rows of output rows start..start+length-1 of an in_size → out_size resize.

    Same arithmetic as TF's ResizeBilinear / ResizeNearestNeighbor with half-pixel centres:
    (lower, upper, lerp) for bilinear, the nearest row, and whether the row is inside.
    """
    dst = tf.range(length) + start
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    src = (tf.cast(dst, tf.float32) + 0.5) * scale - 0.5
    floor = tf.floor(src)
    last = in_size - 1
    lower = tf.clip_by_value(tf.cast(floor, tf.int32), 0, last)
    upper = tf.clip_by_value(tf.cast(tf.math.ceil(src), tf.int32), 0, last)
    nearest = tf.clip_by_value(tf.cast(tf.floor((tf.cast(dst, tf.float32) + 0.5) * scale), tf.int32), 0, last)
    return lower, upper, src - floor, nearest, (dst >= 0) & (dst < out_size)


def resize_example(image: tf.Tensor, mask: tf.Tensor, size: tuple[int, int], *, resize: str = "pad",
                   ignore: int = 255) -> tuple[tf.Tensor, tf.Tensor]:
    """Deterministic eval resize: 'pad' (keep aspect, pad bottom/right) or 'stretch'."""
    th, tw = size
    image = tf.cast(image, tf.float32)
    if resize == "stretch":
        new_hw = tf.constant([th, tw])
    else:
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.minimum(th / hw[0], tw / hw[1])
        new_hw = tf.clip_by_value(tf.cast(tf.round(hw * scale), tf.int32), 1, [th, tw])
    image = tf.image.resize(image, new_hw, method="bilinear")
    mask = tf.image.resize(mask[..., None], new_hw, method="nearest")[..., 0]
    if resize == "pad":
        image = tf.pad(image, [[0, th - new_hw[0]], [0, tw - new_hw[1]], [0, 0]], constant_values=MEAN)
        mask = tf.pad(mask, [[0, th - new_hw[0]], [0, tw - new_hw[1]]], constant_values=ignore)
    image = (image - MEAN) / MEAN
    image.set_shape([th, tw, 3])
    mask = tf.cast(mask, tf.int32)
    mask.set_shape([th, tw])
    return image, mask


def photometric_jitter(image: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """Random brightness (±0.125), contrast and saturation (×0.5–1.5) of a float [0,255] image."""
    x = image / 255.0
    x = tf.image.stateless_random_brightness(x, 0.125, seeds[0])
    x = tf.image.stateless_random_contrast(x, 0.5, 1.5, seeds[1])
    x = tf.image.stateless_random_saturation(x, 0.5, 1.5, seeds[2])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _randint(seed: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """Uniform int in [0, high] (inclusive), statelessly."""
    return tf.random.stateless_uniform([], seed, 0, high + 1, dtype=tf.int32)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    return int(h), int(w)
