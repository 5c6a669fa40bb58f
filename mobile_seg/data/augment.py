"""Training batches: several built datasets mixed example by example, each example
stretched (optionally) and augmented with its soft label through the same geometry.

`make_train_dataset(data_dirs, model_config, train_config, seed)` yields global batches
`(images, masks, soft targets, soft weights)`:
- images float32 `[B, h, w, 3]`, normalised with the model's input mean and std;
- masks int32 `[B, h, w]` class indices, 255 = ignore;
- soft targets float32 `[B, h, w]` in [0, 1]: a teacher's person probability stored by
  `data build` (from `mobile-seg label`), augmented with the image;
- soft weights `[B, h, w]`: 1 where the soft target holds, 0 where an example has none
  (and in padding).

With `paste_prob` > 0 a crop may also get a person pasted onto it (copy-paste
augmentation, Ghiasi et al. 2021): the class-1 pixels of a second, smaller crop drawn from
the `paste_weights` sets overwrite its image, label (1) and soft target (1).
"""
from __future__ import annotations

import os
from pathlib import Path

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.spec import MEAN, STD

PERSON_CLASS = 1  # a 2-class model's person index (checked by training.checks)


def data_dirs(data_dir) -> list[Path]:
    """One built dataset or a list of them, as a list of paths."""
    if isinstance(data_dir, (str, os.PathLike)):
        return [Path(data_dir)]
    return [Path(d) for d in data_dir]


def make_train_dataset(data_dir, model_config: ModelConfig, train_config: TrainConfig, seed: int):
    """Endless global batches of random crops at the model input size (see the module doc).

    base_resize "none" augments from the original resolution (`pipeline.augment_example`
    as is). "stretch" first stretches every image (bilinear), soft label (bilinear) and
    mask (nearest) to the crop size, so that scale 1.0 shows the network exactly what eval
    and the runtime feed it. Datasets are drawn with `data_weights` (default: by size, as
    one concatenated set).
    """
    import tensorflow as tf
    from mobile_seg.data import pipeline
    tc = train_config
    dirs = data_dirs(data_dir)
    streams, sizes = [], []
    for i, d in enumerate(dirs):
        streams.append(_example_stream(d, model_config, tc, seed + 7919 * i))
        _, desc = pipeline.split_files(d, tc.split)
        sizes.append(float(desc["splits"][tc.split]["num_examples"]))
    ds = _mix(streams, list(tc.data_weights) if tc.data_weights is not None else sizes, seed)
    if tc.paste_prob > 0:
        ds = _paste_people(ds, dirs, model_config, tc, seed)
    ds = ds.batch(tc.batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mix(streams: list, weights: list[float], seed: int):
    """One stream drawing from `streams` with probabilities ∝ `weights`."""
    import tensorflow as tf
    if len(streams) == 1:
        return streams[0]
    total = sum(weights)
    return tf.data.Dataset.sample_from_datasets(streams, weights=[w / total for w in weights],
                                                seed=seed, stop_on_empty_dataset=False)


def _paste_people(ds, dirs: list[Path], model_config: ModelConfig, tc: TrainConfig, seed: int):
    """Copy-paste: with probability `paste_prob` an example's image, label and soft target
    take the person pixels of a crop from the `paste_weights` sets, augmented like any crop
    but scaled by `paste_min_scale`–`paste_max_scale` (so it sits at a random place in its
    padding). The soft weight is kept: a pasted person counts where the soft target did."""
    import tensorflow as tf
    paste_tc = tc.replace(min_scale=tc.paste_min_scale, max_scale=tc.paste_max_scale)
    sources = [(d, w) for d, w in zip(dirs, tc.paste_weights) if w > 0]
    people = _mix([_example_stream(d, model_config, paste_tc, seed + 104729 + 7919 * i)
                   for i, (d, _) in enumerate(sources)], [w for _, w in sources], seed + 1)
    coin_seed = tf.constant(seed + 15485863, tf.int64)

    def paste(index, example, person):
        image, mask, target, weight = example
        person_image, person_mask = person[0], person[1]
        coin = tf.random.stateless_uniform([], tf.stack([coin_seed, index])) < tc.paste_prob
        where = coin & tf.equal(person_mask, PERSON_CLASS)
        image = tf.where(where[..., None], person_image, image)
        mask = tf.where(where, tf.constant(PERSON_CLASS, mask.dtype), mask)
        target = tf.where(where, tf.ones_like(target), target)
        return image, mask, target, weight

    return tf.data.Dataset.zip((ds, people)).enumerate().map(
        lambda i, pair: paste(i, *pair), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _example_stream(data_dir: Path, model_config: ModelConfig, tc: TrainConfig, seed: int):
    """Endless, shuffled, augmented examples of one dataset's split."""
    import tensorflow as tf
    from mobile_seg.data import pipeline
    files, desc = pipeline.split_files(data_dir, tc.split)
    ignore = int(desc["ignore_label"])
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 4) if len(files) > 1 else None)
    if tc.shuffle_buffer > 1:
        ds = ds.shuffle(tc.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()

    def augment(index, serialized):
        ex = pipeline.decode_record(serialized)
        return stretch_and_augment(ex, index, model_config, tc, seed, ignore)

    return ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def stretch_and_augment(ex: dict, index, model_config: ModelConfig, tc: TrainConfig, seed: int, ignore: int):
    """Augment one decoded record (`pipeline.decode_record`), stretched to the crop size
    first when `base_resize` is "stretch"; the image normalised as `model_config` says."""
    import tensorflow as tf
    from mobile_seg.data import pipeline
    crop = tuple(model_config.input_size)
    image, mask, soft = ex["image"], ex["mask"], ex["soft"]
    if tc.base_resize == "stretch":
        image = tf.cast(tf.image.resize(image, crop, method="bilinear"), tf.uint8)
        soft = tf.cast(tf.round(tf.image.resize(soft[..., None], crop, method="bilinear")[..., 0]), tf.uint8)
        mask = tf.image.resize(mask[..., None], crop, method="nearest")[..., 0]
    seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), index]), num=9)
    image, mask, target, weight = pipeline.augment_example(
        image, mask, seeds, crop, ignore=ignore, min_scale=tc.min_scale, max_scale=tc.max_scale,
        flip=tc.flip, jitter=tc.jitter, soft=soft, has_soft=ex["has_soft"])
    mean, std = tuple(model_config.input_mean), tuple(model_config.input_std)
    if mean != (MEAN,) * 3 or std != (STD,) * 3:  # the pipeline normalises with (MEAN, STD)
        image = (image * STD + MEAN - tf.constant(mean)) / tf.constant(std)
    return image, mask, target, weight
