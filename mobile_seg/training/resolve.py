"""The configs of a `train` command, resolved from their layers (lowest first):

defaults <- the dataset (class count and names of the first --data) <- RUN_DIR's saved
configs (resuming) <- --config FILE <- explicit flags.
"""
from __future__ import annotations

import os
from pathlib import Path

from mobile_seg import checkpoint as ckpt_io
from mobile_seg.config import ModelConfig, TrainConfig, apply_overrides, load_config_file
from mobile_seg.errors import ConfigError, DatasetError


def dataset_classes(data_dir) -> tuple[int, list[str] | None] | None:
    """(num_classes, class names) of a built dataset's descriptor, None when unreadable
    (the training checks report that later, with the whole picture)."""
    from mobile_seg.data.pipeline import read_descriptor
    try:
        desc = read_descriptor(data_dir)
    except DatasetError:
        return None
    n = desc.get("num_classes")
    if not isinstance(n, int):
        return None
    names = desc.get("class_names")
    return n, (list(names) if isinstance(names, list) and len(names) == n else None)


def resolve_configs(run_dir: str | os.PathLike, config_file: str | os.PathLike | None = None,
                    model_overrides: dict | None = None, train_overrides: dict | None = None,
                    data=None) -> tuple[ModelConfig, TrainConfig]:
    """ModelConfig and TrainConfig from the layers above; `data` is the --data list.

    Flags left out (None) keep the lower layers' value, so rerunning with fewer flags
    resumes the same run. A resolved ModelConfig that differs from RUN_DIR/config.json
    raises ConfigError (one line naming the differing fields).
    """
    run_dir = Path(run_dir)
    model_d = ModelConfig().to_dict()
    train_d = TrainConfig().to_dict()
    names = None
    first = ([data] if isinstance(data, (str, os.PathLike)) else list(data or []))[:1]
    classes = dataset_classes(first[0]) if first else None
    if classes is not None:
        model_d["num_classes"], names = classes
    saved_model = None
    if (run_dir / ckpt_io.CONFIG_FILE).is_file():
        saved_model = ModelConfig.load(run_dir / ckpt_io.CONFIG_FILE)
        model_d.update({k: v for k, v in saved_model.to_dict().items() if v is not None or k != "class_names"})
    saved_train = ckpt_io.read_train_config(run_dir) if run_dir.is_dir() else None
    if saved_train is not None:
        train_d.update(saved_train.to_dict())
    if config_file is not None:
        file_model, file_train = load_config_file(config_file)
        model_d.update(file_model)
        train_d.update(file_train)
    model_d = apply_overrides(model_d, model_overrides or {})
    train_d = apply_overrides(train_d, train_overrides or {})
    if model_d.get("class_names") is None and names and len(names) == model_d["num_classes"]:
        model_d["class_names"] = names
    model_config = ModelConfig.from_dict(model_d)
    train_config = TrainConfig.from_dict(train_d)
    if saved_model is not None and saved_model != model_config:
        raise ConfigError(f"{run_dir / ckpt_io.CONFIG_FILE}: the checkpoint's model config does not match "
                          f"the flags ({'; '.join(saved_model.diff(model_config))}); "
                          f"use matching flags or another --out")
    return model_config, train_config
