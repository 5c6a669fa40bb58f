"""Helpers for the model/train/eval/vis tests: small real datasets and tiny configs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOBILE_SEG = [sys.executable, "-m", "mobile_seg.cli"]
TINY_MODEL = dict(alpha=0.35, input_size=(64, 64))


def voc_subset(src: Path, dst: Path, splits: dict[str, list[str] | int]) -> Path:
    """Copy a few image/mask pairs of a shared VOC dataset into a new VOC folder.

    `splits` maps split name -> ids, or -> N (the first N ids of that split in `src`).
    """
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        if isinstance(ids, int):
            ids = (src / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()[:ids]
        for i in ids:
            shutil.copy(src / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages")
            shutil.copy(src / "SegmentationClass" / f"{i}.png", dst / "SegmentationClass")
        (dst / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return dst


def build(voc: Path, out: Path) -> Path:
    from mobile_seg.data.tfrecords import build_dataset
    build_dataset(voc, out)
    return out


def with_empty_split(built: Path, out: Path, name: str = "empty") -> Path:
    """A copy of a built dataset whose descriptor also lists an empty split `name`."""
    shutil.copytree(built, out)
    desc = json.loads((out / "descriptor.json").read_text())
    desc["splits"][name] = {"num_examples": 0, "shards": []}
    (out / "descriptor.json").write_text(json.dumps(desc))
    return out


def cli(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    """Run `mobile-seg ARGS` in a subprocess (real exit codes and signal handling)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([*MOBILE_SEG, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines of a CLI's stderr (TF's own log noise filtered out)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def untrained_run(run_dir: Path, config) -> Path:
    """A run directory (config.json + checkpoints/ckpt-0) of a freshly built model: the
    layout `mobile-seg train` writes, without spending time on training steps."""
    import tensorflow as tf
    from mobile_seg.model import build_model
    import tf_keras
    run_dir = Path(run_dir)
    config.save(run_dir / "config.json")
    tf_keras.utils.set_random_seed(0)   # the same weights every run (tests compare outputs)
    ckpt = tf.train.Checkpoint(model=build_model(config), step=tf.Variable(0, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), max_to_keep=1).save(checkpoint_number=0)
    return run_dir
