"""Session-wide artefacts for the QAT / export / report tests, each made once per test run.

Conversions are the slow part (10-30 s each on a loaded 2-core machine), so the tiny
run, its QAT run and the export of every variant are built once per `root` folder and
cached here (shared by test_qat.py, test_export.py and test_report.py in one pytest
process, in any order). Tests must not change these artefacts: copy them first.
Random weights are seeded: the parity and accuracy thresholds see the same network
every run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TINY = dict(alpha=0.35, input_size=(64, 64))
_cache: dict = {}


def tiny_data(shared_data: Path, root: Path) -> Path:
    """A built dataset of 6 train + 3 val real portraits."""
    key = ("data", str(root))
    if key not in _cache:
        from train_helpers import build, voc_subset
        voc = voc_subset(shared_data / "portraits", root / "voc", {"train": 6, "val": 3})
        _cache[key] = build(voc, root / "built")
    return _cache[key]


def tiny_run(root: Path) -> Path:
    """A RUN_DIR as `mobile-seg train` writes it: config.json + a tf.train checkpoint.

    Random weights, no training (the export tests check conversion, parity and metadata,
    not accuracy), but BatchNorm statistics that match the network: set from one batch
    with momentum 0, so inference mode computes what training mode does (a random net
    with default statistics explodes in inference mode, and QAT ranges with it).
    """
    key = ("run", str(root))
    if key not in _cache:
        import mobile_seg  # noqa: F401
        import tensorflow as tf
        import tf_keras
        from mobile_seg.config import ModelConfig, TrainConfig
        from mobile_seg.model import build_model
        run = root / "run"
        config = ModelConfig(**TINY)
        tf_keras.utils.set_random_seed(0)
        model = build_model(config)
        set_batchnorm_statistics(model, np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 3)))
        run.mkdir(parents=True)
        config.save(run / "config.json")
        TrainConfig(batch_size=2, steps=4, checkpoint_every=2, log_every=1).save(run / "train_config.json")
        step = tf.Variable(5, dtype=tf.int64)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=step),
                                             str(run / "checkpoints"), max_to_keep=1)
        manager.save(checkpoint_number=5)
        _cache[key] = run
    return _cache[key]


def set_batchnorm_statistics(model, images) -> None:
    """Moving mean/variance of every BN layer := its batch statistics on `images`."""
    import tf_keras
    bns = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(np.asarray(images, np.float32), training=True)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum


def tiny_qat(shared_data: Path, root: Path):
    """(QAT_DIR, TrainResult) of 2 QAT steps on the tiny run."""
    key = ("qat", str(root))
    if key not in _cache:
        from mobile_seg.config import QATConfig
        from mobile_seg.qat import qat
        data, run = tiny_data(shared_data, root), tiny_run(root)
        result = qat(run, data, root / "qat", QATConfig(steps=2, batch_size=2, calib_images=4), progress=False)
        _cache[key] = (root / "qat", result)
    return _cache[key]


def tiny_export(shared_data: Path, root: Path):
    """ExportResult of every variant of the tiny run + its QAT run (float I/O, logits)."""
    key = ("export", str(root))
    if key not in _cache:
        from converters.export import export
        data, run = tiny_data(shared_data, root), tiny_run(root)
        qat_dir, _ = tiny_qat(shared_data, root)
        _cache[key] = export(run, qat=qat_dir, out_dir=root / "export", variants="all", data=data,
                             calib_images=4)
    return _cache[key]


def mini_model(num_classes: int = 2, size: int = 32, extra=None):
    """A 4-layer segmentation-shaped Keras model: fast to convert (output-head tests)."""
    import tf_keras
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    x = inp = L.Input((size, size, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = L.BatchNormalization(name="conv_BatchNorm")(x)
    x = L.ReLU(name="conv_relu")(x)
    if extra is not None:
        x = extra(x)
    x = L.Conv2D(num_classes, 1, name="logits")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="logits_upsample")(x)
    model = tf_keras.Model(inp, x)
    set_batchnorm_statistics(model, np.random.default_rng(1).uniform(-1, 1, (4, size, size, 3)))
    return model
