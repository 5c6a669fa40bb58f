"""Checks before any TensorFlow work: datasets, run directory and configs agree, or one
error line says what does not."""
from __future__ import annotations

from pathlib import Path

from mobile_seg import checkpoint as ckpt_io
from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.data.augment import data_dirs
from mobile_seg.errors import ConfigError, DatasetError


def check_inputs(data_dir, run_dir, model_config: ModelConfig, train_config: TrainConfig) -> list[dict]:
    """Validate datasets, run directory and configs; return the datasets' descriptors."""
    dirs = data_dirs(data_dir)
    if not dirs:
        raise ConfigError("no --data given")
    if train_config.data_weights is not None and len(train_config.data_weights) != len(dirs):
        raise ConfigError(f"--data-weights has {len(train_config.data_weights)} values for "
                          f"{len(dirs)} --data folders")
    if train_config.paste_prob > 0:
        if len(train_config.paste_weights) != len(dirs):
            raise ConfigError(f"--paste-weights has {len(train_config.paste_weights)} values for "
                              f"{len(dirs)} --data folders")
        if model_config.num_classes != 2:
            raise ConfigError(f"--paste-prob pastes people (class 1), which needs a 2-class model "
                              f"(background, person), not {model_config.num_classes} classes")
    descriptors = [check_dataset(d, model_config, train_config) for d in dirs]
    if train_config.init_weights is not None and not model_config.has_pretrained_weights:
        what = (f"mobilenetv2 alpha {model_config.alpha}" if model_config.backbone == "mobilenetv2"
                else model_config.backbone)
        raise ConfigError(f"--init-weights: no ImageNet weights exist for {what} (only mobilenetv2 "
                          f"alpha 1.0); leave it out to train from scratch")
    if train_config.init_run is not None:
        if ckpt_io.latest_checkpoint(train_config.init_run) is None:
            raise ConfigError(f"{train_config.init_run}: --init-run has no checkpoint")
        source = ckpt_io.read_run_config(train_config.init_run)
        differences = source.weight_diff(model_config)  # input size, output stride may change
        if differences:
            raise ConfigError(f"{train_config.init_run}: --init-run is another model "
                              f"({'; '.join(differences)})")
    soft = [str(d) for d, desc in zip(dirs, descriptors) if desc.get("soft_labels")]
    if soft and model_config.num_classes != 2:
        raise ConfigError(f"{soft[0]}: has soft person labels, which need a 2-class model "
                          f"(background, person), not {model_config.num_classes} classes")
    check_run_dir(run_dir, model_config)
    return descriptors


def check_dataset(data_dir: Path, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """One built dataset: the split exists and has examples, its classes fit the model."""
    from mobile_seg.data.pipeline import read_descriptor
    descriptor = read_descriptor(data_dir)
    split = train_config.split
    splits = descriptor.get("splits", {})
    if split not in splits:
        raise DatasetError(f"no split {split!r} (have: {', '.join(sorted(splits)) or 'none'})", data_dir)
    if int(splits[split].get("num_examples", 0)) == 0:
        raise DatasetError(f"split {split!r} is empty: nothing to train on", data_dir)
    n = int(descriptor.get("num_classes", model_config.num_classes))
    if n != model_config.num_classes:
        raise ConfigError(f"dataset {data_dir} has {n} classes but the model has {model_config.num_classes} "
                          f"(--num-classes, --config or the run's config.json)")
    if train_config.class_weights is not None and len(train_config.class_weights) != n:
        raise ConfigError(f"--class-weights has {len(train_config.class_weights)} values, "
                          f"the dataset has {n} classes")
    return descriptor


def check_run_dir(run_dir, model_config: ModelConfig) -> ModelConfig | None:
    """Raise ConfigError if RUN_DIR holds a run of a different model; return its config."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / ckpt_io.CONFIG_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: exists and is not a directory")
    if not cfg_path.is_file():
        if (run_dir / ckpt_io.CHECKPOINT_DIR).is_dir() and ckpt_io.latest_checkpoint(run_dir):
            raise ConfigError(f"{run_dir}: has checkpoints but no {ckpt_io.CONFIG_FILE}; "
                              f"cannot tell which model they belong to")
        return None
    saved = ModelConfig.load(cfg_path)
    if saved != model_config:
        raise ConfigError(f"{cfg_path}: the checkpoint's model config does not match the flags "
                          f"({'; '.join(saved.diff(model_config))}); use the same flags or another --out")
    return saved
