"""tf.data pipeline: shapes, dtypes, ranges, padding values, determinism, eval resize, errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobile_seg.data.pipeline import (eval_dataset, iterate_examples, read_descriptor,
                                      train_dataset)
from mobile_seg.data.tfrecords import build_dataset
from mobile_seg.errors import DatasetError

# small portraits (183 × 275 … 198 × 255) and two large ones, in train and val
TRAIN_IDS = ["portrait_003", "portrait_007", "portrait_022", "portrait_065", "portrait_084", "portrait_095"]
VAL_IDS = ["portrait_032", "portrait_288"]


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipe") / "ds"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    for i in TRAIN_IDS + VAL_IDS:
        shutil.copy(shared_data / "portraits/JPEGImages" / f"{i}.jpg", root / "JPEGImages")
        shutil.copy(shared_data / "portraits/SegmentationClass" / f"{i}.png", root / "SegmentationClass")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(TRAIN_IDS))
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(VAL_IDS))
    out = root.parent / "built"
    build_dataset(root, out, shards=2)
    return out


def batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_train_shapes_dtypes_ranges(built):
    ds = train_dataset(built, "train", (96, 128), 4, seed=3)
    assert ds.element_spec[0].shape.as_list() == [4, 96, 128, 3]
    assert ds.element_spec[1].shape.as_list() == [4, 96, 128]
    for x, y in batches(ds, 3):
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert set(np.unique(y)) <= {0, 1, 255}
        assert (y == 1).any()


@pytest.mark.parametrize("jitter", [False, True])
def test_padding_uses_mean_and_ignore_label(built, jitter):
    # scale 0.25 shrinks every image below the crop: each sample is an image inside padding
    ds = train_dataset(built, "train", 256, 6, seed=0, min_scale=0.25, max_scale=0.25, jitter=jitter)
    (x, y), = batches(ds, 1)
    for image, mask in zip(x, y):
        pad = mask == 255  # the source masks hold no 255: every 255 is padding
        assert pad.any()
        assert (image[pad] == 0.0).all()
        rows, cols = np.where(~pad)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == (~pad).sum()  # the image is one rectangle
        assert (np.abs(image[~pad]) > 0).mean() > 0.9


def test_scale_1_crop_is_the_image_itself(built):
    # no scaling or flip: the crop contains the original pixels exactly, normalised
    originals = {i: (img, m) for i, img, m in iterate_examples(built, "train")}
    ds = train_dataset(built, "train", 640, 1, seed=5, min_scale=1.0, max_scale=1.0, flip=False)
    for x, y in batches(ds, 6):
        mask = y[0]
        rows, cols = np.where(mask != 255)
        r0, c0 = rows.min(), cols.min()
        matches = [i for i, (img, m) in originals.items()
                   if m.shape == (rows.max() - r0 + 1, cols.max() - c0 + 1)
                   and np.array_equal(mask[r0:r0 + m.shape[0], c0:c0 + m.shape[1]], m)]
        assert matches
        img = originals[matches[0]][0]
        crop = x[0][r0:r0 + img.shape[0], c0:c0 + img.shape[1]]
        np.testing.assert_allclose(crop, (img.astype(np.float32) - 127.5) / 127.5, atol=1e-6)


def test_same_seed_same_batches_other_seed_differs(built):
    kwargs = dict(split="train", crop_size=128, batch_size=3, jitter=True)
    a = batches(train_dataset(built, seed=7, **kwargs), 3)
    b = batches(train_dataset(built, seed=7, **kwargs), 3)
    c = batches(train_dataset(built, seed=8, **kwargs), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_jitter_changes_pixels_not_masks(built):
    common = dict(split="train", crop_size=128, batch_size=2, seed=1)
    (x0, y0), = batches(train_dataset(built, **common), 1)
    (x1, y1), = batches(train_dataset(built, jitter=True, **common), 1)
    assert np.array_equal(y0, y1)
    assert not np.allclose(x0, x1)
    assert x1.min() >= -1.0 and x1.max() <= 1.0


def test_no_repeat_ends(built):
    n = sum(1 for _ in train_dataset(built, "train", 64, 2, repeat=False))
    assert n == len(TRAIN_IDS) // 2


def test_eval_pad_keeps_aspect_and_pads_bottom_right(built):
    ds = eval_dataset(built, "val", 200, batch_size=1)
    out = batches(ds, 2)
    originals = list(iterate_examples(built, "val"))
    assert len(out) == 2
    for (x, y), (_, image, mask) in zip(out, originals):
        assert x.shape == (1, 200, 200, 3) and y.shape == (1, 200, 200)
        h, w = mask.shape
        scale = min(200 / h, 200 / w)
        nh, nw = round(h * scale), round(w * scale)
        assert (y[0, :nh, :nw] != 255).all()
        assert (y[0, nh:] == 255).all() and (y[0, :, nw:] == 255).all()
        assert (x[0, nh:] == 0.0).all() and (x[0, :, nw:] == 0.0).all()
    again = batches(eval_dataset(built, "val", 200, batch_size=1), 2)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(out, again))


def test_eval_stretch_fills_the_frame(built):
    (x, y), = batches(eval_dataset(built, "val", (120, 160), batch_size=2, resize="stretch"), 1)
    assert x.shape == (2, 120, 160, 3) and y.shape == (2, 120, 160)
    assert set(np.unique(y)) <= {0, 1}
    with pytest.raises(ValueError):
        eval_dataset(built, "val", 64, resize="crop")


def test_iterate_examples_original_resolution(built, shared_data):
    got = list(iterate_examples(built, "val"))
    assert [i for i, _, _ in got] == VAL_IDS
    for id_, image, mask in got:
        original = np.array(Image.open(shared_data / "portraits/SegmentationClass" / f"{id_}.png"))
        assert image.shape == original.shape + (3,) and image.dtype == np.uint8
        assert np.array_equal(mask, original)


def test_read_descriptor_errors(built, tmp_path):
    with pytest.raises(DatasetError, match="no descriptor.json"):
        read_descriptor(tmp_path)
    (tmp_path / "descriptor.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_descriptor(tmp_path)
    desc = json.loads((built / "descriptor.json").read_text())
    (tmp_path / "descriptor.json").write_text(json.dumps({**desc, "format": "other/9"}))
    with pytest.raises(DatasetError, match="format"):
        read_descriptor(tmp_path)
    (tmp_path / "descriptor.json").write_text(json.dumps(desc))
    with pytest.raises(DatasetError, match="train-00000-of-00002.tfrecord"):
        read_descriptor(tmp_path)
    with pytest.raises(DatasetError, match=r"no split 'test' \(has: train, val\)"):
        train_dataset(built, "test", 64, 2)


@pytest.mark.parametrize("scale, start", [(1.7, (13, 40)), (0.6, (5, 2)), (0.37, (-9, -20)), (2.0, (300, 500))])
def test_resize_crop_equals_resize_then_slice(shared_data, scale, start):
    import tensorflow as tf

    from mobile_seg.data.pipeline import MEAN, resize_crop
    image = np.array(Image.open(shared_data / "portraits/JPEGImages/portrait_001.jpg"))
    mask = np.array(Image.open(shared_data / "portraits/SegmentationClass/portrait_001.png"))
    new_hw = [round(image.shape[0] * scale), round(image.shape[1] * scale)]
    crop = (64, 96)
    got_image, got_mask, inside = resize_crop(tf.constant(image), tf.constant(mask), tf.constant(new_hw),
                                              start, crop, ignore=255)
    # reference: resize everything, pad generously with MEAN / 255, slice
    ref_image = tf.image.resize(image.astype(np.float32), new_hw, method="bilinear").numpy()
    ref_mask = tf.image.resize(mask[..., None], new_hw, method="nearest").numpy()[..., 0]
    p = 200
    ref_image = np.pad(ref_image, [(p, p), (p, p), (0, 0)], constant_values=MEAN)
    ref_mask = np.pad(ref_mask, [(p, p), (p, p)], constant_values=255)
    y, x = start[0] + p, start[1] + p
    np.testing.assert_allclose(got_image.numpy(), ref_image[y:y + crop[0], x:x + crop[1]], atol=1e-3)
    assert np.array_equal(got_mask.numpy(), ref_mask[y:y + crop[0], x:x + crop[1]])
    assert np.array_equal(inside.numpy(), ref_mask[y:y + crop[0], x:x + crop[1]] != 255)
