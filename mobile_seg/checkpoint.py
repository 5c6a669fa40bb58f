"""Training runs on disk: config files, checkpoints, and rebuilding a model from them.

Layout of a RUN_DIR written by `mobile-seg train`::

    RUN_DIR/config.json          ModelConfig (rebuild the network with build_model)
    RUN_DIR/train_config.json    TrainConfig of the latest (re)start
    RUN_DIR/checkpoints/ckpt-N.* tf.train.Checkpoint(model=, optimizer=, step=)
    RUN_DIR/tensorboard/         scalars and image overlays
    RUN_DIR/train_summary.json   last step, loss, running mIoU, img/s, wall time

Loading never deserialises a Keras model: the network is rebuilt from config.json and
the checkpoint's weights are restored into it (what QAT and export need too).
"""
from __future__ import annotations

import os
from pathlib import Path

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ModelFileError

CONFIG_FILE = "config.json"
TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "train_summary.json"


def latest_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """Prefix of the newest checkpoint in RUN_DIR/checkpoints (None when there is none)."""
    import tensorflow as tf
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    return tf.train.latest_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def checkpoint_step(prefix: str) -> int:
    """The step number in a 'ckpt-N' prefix."""
    return int(str(prefix).rsplit("-", 1)[-1])


def output_file(folder: str | os.PathLike, name: str, what: str, command: str) -> Path:
    """FOLDER/NAME of a command's output folder; ModelFileError naming FOLDER when FOLDER is
    missing, a file, or lacks NAME (e.g. what="run", command="mobile-seg train")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"is a file, not a {what} directory (a `{command}` --out folder)"
                             if folder.exists() else f"{what} directory not found", folder)
    if not (folder / name).is_file():
        raise ModelFileError(f"no {name}: not a `{command}` output directory", folder)
    return folder / name


def read_run_config(run_dir: str | os.PathLike) -> ModelConfig:
    """RUN_DIR/config.json as a ModelConfig (ModelFileError when RUN_DIR is not a run)."""
    return ModelConfig.load(output_file(run_dir, CONFIG_FILE, "run", "mobile-seg train"))


def read_train_config(run_dir: str | os.PathLike) -> TrainConfig | None:
    path = Path(run_dir) / TRAIN_CONFIG_FILE
    return TrainConfig.load(path) if path.is_file() else None


def restore_weights(model, prefix: str) -> int:
    """Restore model weights (only) from checkpoint `prefix`; return its step.

    Raises ModelFileError when the checkpoint's variables do not fit the model.
    """
    import tensorflow as tf
    problem = checkpoint_mismatch(model, prefix)
    if problem:
        raise ModelFileError(f"checkpoint does not fit the model of config.json ({problem})", prefix)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, step=step)
    try:
        status = ckpt.restore(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        msg = str(e).strip().splitlines()[0][:200]
        raise ModelFileError(f"checkpoint does not fit the model of config.json ({msg})", prefix) from None
    return int(step.numpy())


def checkpoint_mismatch(model, prefix: str) -> str | None:
    """Why the checkpoint's model variables do not fit `model` (None when they do).

    Checked from the checkpoint's variable list before restoring, so a mismatch is one
    clear message (instead of a failed restore and a screenful of unrestored values).
    """
    import tensorflow as tf
    try:
        saved = dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError) as e:
        return f"unreadable: {str(e).strip().splitlines()[0][:120]}"
    saved = {k: tuple(v) for k, v in saved.items() if k.startswith("model/")}
    expected = {}
    for i, layer in enumerate(layer for layer in model.layers if layer.weights):
        for w in layer.weights:
            attr = w.name.split("/")[-1].split(":")[0]
            expected[f"model/layer_with_weights-{i}/{attr}/.ATTRIBUTES/VARIABLE_VALUE"] = (layer.name, tuple(w.shape))
    if not set(expected) & set(saved):
        return None  # another object layout: let restore() judge
    for key, (layer, shape) in expected.items():
        if key not in saved:
            return f"no value for layer {layer}"
        if saved[key] != shape:
            return f"layer {layer}: checkpoint has shape {saved[key]}, the model {shape}"
    extra = len([k for k in saved if "/.ATTRIBUTES/" in k]) - len(expected)
    if extra > 0:
        return f"the checkpoint has {extra} model variables more than the model"
    return None


def load_run(run_dir: str | os.PathLike, checkpoint: str | None = None):
    """Rebuild the model of a run and restore its newest (or the given) checkpoint.

    Returns (model, config, step).
    """
    from mobile_seg.model import build_model
    config = read_run_config(run_dir)
    prefix = checkpoint or latest_checkpoint(run_dir)
    if prefix is None:
        raise ModelFileError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}", run_dir)
    model = build_model(config)
    step = restore_weights(model, prefix)
    return model, config, step
