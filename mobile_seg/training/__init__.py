"""Training: a task (what is trained: model, losses, optimizer) run by one loop.

- `task.py`: `Task`, `float_task` (`mobile-seg train`), the losses (cross-entropy,
  distillation, weight decay on conv kernels, also inside QAT wrappers), the optimizer.
- `loop.py`: `run(task, data, run_dir)`: strategy, checkpoints and resume, the stop flag,
  the step function. `mobile_seg.qat.qat` runs its QAT task on the same loop.
- `progress.py`: terminal progress, running figures, TensorBoard, train_summary.json.
- `checks.py`: datasets, run directory and configs checked before TensorFlow starts.
- `resolve.py`: a command's configs from defaults, the dataset, the run, a file and flags.
The input pipeline is `mobile_seg.data.augment`.
"""
from __future__ import annotations

import os

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.training.progress import TrainResult


def train(data_dir, run_dir: str | os.PathLike, model_config: ModelConfig, train_config: TrainConfig,
          **loop_options) -> TrainResult:
    """Train (or resume) the float model of `model_config` into `run_dir`
    (`loop.run` options: progress, dataset, on_step, stream, startup_timeout)."""
    from mobile_seg.training.loop import run
    from mobile_seg.training.task import float_task
    return run(float_task(model_config, train_config), data_dir, run_dir, **loop_options)


__all__ = ["train", "TrainResult"]
