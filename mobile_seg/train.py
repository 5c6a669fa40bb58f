"""Train a DeepLabV3(+) model on a built dataset, resumably, on one device or many.

`train(data_dir, run_dir, model_config, train_config)` runs a custom tf.distribute loop:
softmax cross-entropy ignoring 255 (+ optional class weights), L2 weight decay on conv
kernels, SGD/Adam with a poly learning rate after linear warm-up. It checkpoints every N
steps (and on SIGTERM / Ctrl-C, and at the end); calling it again with the same
RUN_DIR resumes from the newest checkpoint. Progress (loss, running mIoU, img/s, ETA)
goes to the terminal, scalars and image overlays to RUN_DIR/tensorboard.
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mobile_seg import checkpoint as ckpt_io
from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ConfigError, DatasetError
from mobile_seg import cluster
from mobile_seg.io_utils import check_output_path, write_json_atomic
from mobile_seg.locks import folder_lock, note_stale
from mobile_seg.metrics import ConfusionMatrix
from mobile_seg.signals import StopFlag, stop_on_signals

from mobile_seg.spec import IGNORE_LABEL, MEAN, STD  # noqa: E402
PIPELINE_MEAN_STD = (MEAN, STD)  # what mobile_seg.data.pipeline normalises with
PREVIEW_IMAGES = 3
SIGNAL_NAMES = ("SIGINT", "SIGTERM")   # the stop request each step shares between workers


@dataclass
class TrainResult:
    run_dir: Path
    start_step: int
    step: int
    steps: int
    interrupted: str | None          # signal name when stopped early, else None
    loss: float
    running_miou: float
    images_per_sec: float
    wall_s: float
    checkpoint: str | None
    replicas: int = 1
    history: list = field(default_factory=list, repr=False)   # [(step, loss)] logged points
    model: object = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "start_step": self.start_step, "step": self.step,
                "steps": self.steps, "interrupted": self.interrupted, "loss": _r(self.loss),
                "running_miou": _r(self.running_miou), "images_per_sec": _r(self.images_per_sec),
                "wall_s": _r(self.wall_s), "checkpoint": self.checkpoint, "replicas": self.replicas}


def _r(x, nd=4):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


# --- learning rate --------------------------------------------------------------------

def poly_learning_rate(step, cfg: TrainConfig):
    """Linear warm-up to `learning_rate`, then (1 - t)^power decay to `end_learning_rate`."""
    import tensorflow as tf
    step = tf.cast(step, tf.float32)
    base, end = cfg.learning_rate, cfg.end_learning_rate
    warm = float(max(cfg.warmup_steps, 0))
    decay_steps = max(float(cfg.steps) - warm, 1.0)
    t = tf.clip_by_value((step - warm) / decay_steps, 0.0, 1.0)
    poly = (base - end) * tf.pow(1.0 - t, cfg.lr_power) + end
    if warm > 0:
        return tf.where(step < warm, base * (step + 1.0) / warm, poly)
    return poly


def make_schedule(cfg: TrainConfig):
    import tf_keras

    class PolyWithWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return poly_learning_rate(step, cfg)

        def get_config(self):
            return cfg.to_dict()

    return PolyWithWarmup()


def make_optimizer(cfg: TrainConfig):
    import tf_keras
    schedule = make_schedule(cfg)
    if cfg.optimizer == "adam":
        return tf_keras.optimizers.Adam(learning_rate=schedule)
    return tf_keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum)


# --- tf.distribute ---------------------------------------------------------------------

def make_strategy(name: str):
    """default = no distribution; mirrored = all local devices; multiworker = TF_CONFIG cluster."""
    import tensorflow as tf
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # No GPU: mirror over the logical CPU devices (one unless configured otherwise).
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        cluster.read_tf_config()  # one clear line for a missing or malformed TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_role(strategy) -> tuple[bool, str]:
    """(is_chief, name) of this process; single-process strategies are always chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, "chief"
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
    return chief, f"{task_type}-{task_id}"


# --- progress ---------------------------------------------------------------------------------

class Progress:
    """A tqdm bar on a terminal; one log line every `every` steps otherwise (logs, nohup)."""

    def __init__(self, start: int, total: int, every: int, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.every, self.total, self.enabled = every, total, enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.bar = None

    def start(self, step: int) -> None:
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, initial=step, unit="step", dynamic_ncols=True, file=self.stream)

    def update(self, step: int, loss: float, miou: float, ips: float, eta_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f} mIoU {miou:.3f} {ips:.1f} img/s", refresh=False)
            self.bar.update(step - self.bar.n)
        elif step % self.every == 0 or step == self.total:
            eta = time.strftime("%H:%M:%S", time.gmtime(max(eta_s, 0))) if math.isfinite(eta_s) else "?"
            print(f"step {step}/{self.total}  loss {loss:.4f}  mIoU {miou:.3f}  {ips:.1f} img/s  "
                  f"ETA {eta}", file=self.stream, flush=True)

    def write(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- checks ------------------------------------------------------------------------------------

def data_dirs(data_dir) -> list[Path]:
    """One built dataset or a list of them, as a list of paths."""
    if isinstance(data_dir, (str, os.PathLike)):
        return [Path(data_dir)]
    return [Path(d) for d in data_dir]


def check_inputs(data_dir, run_dir, model_config: ModelConfig, train_config: TrainConfig) -> list[dict]:
    """Validate datasets, run directory and configs before any TF work; return the descriptors."""
    dirs = data_dirs(data_dir)
    if not dirs:
        raise ConfigError("no --data given")
    if train_config.data_weights is not None and len(train_config.data_weights) != len(dirs):
        raise ConfigError(f"--data-weights has {len(train_config.data_weights)} values for "
                          f"{len(dirs)} --data folders")
    descriptors = [_check_dataset(d, model_config, train_config) for d in dirs]
    if (tuple(model_config.input_mean) != (PIPELINE_MEAN_STD[0],) * 3
            or tuple(model_config.input_std) != (PIPELINE_MEAN_STD[1],) * 3):
        raise ConfigError("training needs input_mean = input_std = 127.5 (what the input pipeline "
                          "normalises with)")
    if train_config.init_weights is not None and not model_config.has_pretrained_weights:
        what = (f"mobilenetv2 alpha {model_config.alpha}" if model_config.backbone == "mobilenetv2"
                else model_config.backbone)
        raise ConfigError(f"--init-weights: no ImageNet weights exist for {what} (only mobilenetv2 "
                          f"alpha 1.0); leave it out to train from scratch")
    if train_config.init_run is not None:
        if ckpt_io.latest_checkpoint(train_config.init_run) is None:
            raise ConfigError(f"{train_config.init_run}: --init-run has no checkpoint")
        source = ckpt_io.read_run_config(train_config.init_run)
        if source != model_config:
            raise ConfigError(f"{train_config.init_run}: --init-run is another model "
                              f"({'; '.join(source.diff(model_config))})")
    soft = [str(d) for d, desc in zip(dirs, descriptors) if desc.get("soft_labels")]
    if soft and model_config.num_classes != 2:
        raise ConfigError(f"{soft[0]}: has soft person labels, which need a 2-class model "
                          f"(background, person), not {model_config.num_classes} classes")
    check_run_dir(run_dir, model_config)
    return descriptors


def _check_dataset(data_dir: Path, model_config: ModelConfig, train_config: TrainConfig) -> dict:
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
        raise ConfigError(f"dataset {data_dir} has {n} classes but the model config has "
                          f"{model_config.num_classes} (--num-classes)")
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


# --- data --------------------------------------------------------------------------------------

def make_train_dataset(data_dir, model_config: ModelConfig, train_config: TrainConfig, seed: int):
    """Global batches (images [-1, 1], int32 masks, soft targets [0, 1], soft weights) of
    random crops at the model input size.

    base_resize "none" augments from the original resolution (the input pipeline's
    `augment_example` as is). "stretch" first stretches every image (bilinear) and mask
    (nearest) to the crop size, then applies the same augmentation, so that scale 1.0
    shows the network exactly what eval and the runtime feed it.

    Soft targets are a teacher's person probability stored by `data build` (from `mobile-seg
    label`), augmented with the image; their weight is 0 where an example has none (and
    in padding). Several datasets are mixed example by example with `data_weights`
    (default: by size).
    """
    import tensorflow as tf
    from mobile_seg.data import pipeline
    crop = tuple(model_config.input_size)
    tc = train_config
    dirs = data_dirs(data_dir)
    streams, sizes = [], []
    for i, d in enumerate(dirs):
        streams.append(_example_stream(d, crop, tc, seed + 7919 * i))
        _, desc = pipeline.split_files(d, tc.split)
        sizes.append(float(desc["splits"][tc.split]["num_examples"]))
    weights = list(tc.data_weights) if tc.data_weights is not None else sizes
    if len(streams) == 1:
        ds = streams[0]
    else:
        total = sum(weights)
        ds = tf.data.Dataset.sample_from_datasets(streams, weights=[w / total for w in weights],
                                                  seed=seed, stop_on_empty_dataset=False)
    ds = ds.batch(tc.batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _example_stream(data_dir: Path, crop, tc: TrainConfig, seed: int):
    """Endless, shuffled, augmented (image, mask, soft target, soft weight) examples of one
    dataset's split."""
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
        return stretch_and_augment(ex, index, crop, tc, seed, ignore)

    return ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def stretch_and_augment(ex: dict, index, crop, tc: TrainConfig, seed: int, ignore: int):
    """Augment one decoded record (`pipeline.decode_record`), stretched to the crop size
    first when `base_resize` is "stretch" (see make_train_dataset)."""
    import tensorflow as tf
    from mobile_seg.data import pipeline
    image, mask, soft = ex["image"], ex["mask"], ex["soft"]
    if tc.base_resize == "stretch":
        image = tf.cast(tf.image.resize(image, crop, method="bilinear"), tf.uint8)
        soft = tf.cast(tf.round(tf.image.resize(soft[..., None], crop, method="bilinear")[..., 0]), tf.uint8)
        mask = tf.image.resize(mask[..., None], crop, method="nearest")[..., 0]
    seeds = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), index]), num=9)
    return pipeline.augment_example(image, mask, seeds, crop, ignore=ignore, min_scale=tc.min_scale,
                                    max_scale=tc.max_scale, flip=tc.flip, jitter=tc.jitter,
                                    soft=soft, has_soft=ex["has_soft"])


# --- the loop ------------------------------------------------------------------------------------

def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike, model_config: ModelConfig,
          train_config: TrainConfig, *, progress: bool = True, dataset=None,
          on_step: Callable[[int, float], None] | None = None, stream=None,
          model_fn: Callable[[ModelConfig], object] | None = None,
          startup_timeout: float = cluster.DEFAULT_STARTUP_TIMEOUT) -> TrainResult:
    """Train (or resume) the model of `model_config` into `run_dir`.

    Args:
        data_dir: a built dataset (`mobile-seg data build`).
        run_dir: where checkpoints, configs and TensorBoard logs go; reused to resume.
        dataset: optional tf.data.Dataset of global batches (images, masks) to use instead
            of the input pipeline (benchmarks, tests).
        on_step: called as on_step(step, loss) after every step (tests, benchmarks).
        model_fn: builds the model instead of `build_model` (inside the strategy scope), with
            its starting weights (QAT: the float run restored, then quantized; mobile_seg.qat).
        startup_timeout: multiworker: seconds to wait for every TF_CONFIG task to start.

    Returns a TrainResult; `interrupted` names the signal when SIGINT/SIGTERM stopped it
    (a checkpoint of that step has been saved). RUN_DIR is locked while training: a
    second process writing there is refused with a line naming the first.
    """
    run_dir = Path(run_dir)
    check_output_path(run_dir, "dir")
    multiworker = train_config.strategy == "multiworker"
    # Only the chief writes RUN_DIR; the other workers share it (their checkpoints are throw-away).
    chief = not multiworker or cluster.is_chief(cluster.read_tf_config())
    with folder_lock(run_dir, "mobile-seg train") if chief else contextlib.nullcontext() as lock:
        if lock is not None and progress:
            note_stale(lock, stream)
        strategy = None
        if multiworker:  # before other TF work, as MultiWorkerMirroredStrategy needs
            with stop_on_signals("stopped while waiting for the other workers; nothing was trained"):
                cluster.wait_for_workers(cluster.read_tf_config(), startup_timeout,
                                         log=lambda m: print(m, file=stream or sys.stderr, flush=True))
                strategy = make_strategy("multiworker")
        with StopFlag() as stop:  # from here on a signal stops after the current step, saved
            return _train(data_dir, run_dir, model_config, train_config, strategy, stop, progress=progress,
                          dataset=dataset, on_step=on_step, stream=stream, model_fn=model_fn)


def _train(data_dir, run_dir: Path, model_config: ModelConfig, train_config: TrainConfig, strategy,
           stop: StopFlag, *, progress, dataset, on_step, stream, model_fn) -> TrainResult:
    """`train` once RUN_DIR is locked and the strategy (multiworker) exists."""
    check_inputs(data_dir, run_dir, model_config, train_config)
    data_dir = data_dirs(data_dir)

    import tensorflow as tf
    import tf_keras
    from mobile_seg.losses import pixel_cross_entropy, soft_label_loss
    from mobile_seg.model import build_model

    strategy = strategy or make_strategy(train_config.strategy)
    is_chief, role = worker_role(strategy)
    out = Progress(0, train_config.steps, train_config.log_every, enabled=progress and is_chief, stream=stream)
    tf_keras.utils.set_random_seed(train_config.seed)

    ckpt_dir = run_dir / ckpt_io.CHECKPOINT_DIR
    write_dir = ckpt_dir if is_chief else run_dir / ckpt_io.CHECKPOINT_DIR / f".{role}"
    run_dir.mkdir(parents=True, exist_ok=True)

    with strategy.scope():
        model = (model_fn or build_model)(model_config)
        optimizer = make_optimizer(train_config)
        optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=train_config.keep_checkpoints)

    latest = ckpt_io.latest_checkpoint(run_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        start = int(step_var.numpy())
        out.write(f"resuming {run_dir} from step {start} ({latest})")
    else:
        start = 0
        if train_config.init_run:
            step = ckpt_io.restore_weights(model, ckpt_io.latest_checkpoint(train_config.init_run))
            out.write(f"initialised from {train_config.init_run} (step {step})")
        elif train_config.init_weights:
            from mobile_seg.model.weights import load_imagenet_weights
            assigned = load_imagenet_weights(model, model_config, train_config.init_weights)
            out.write(f"initialised {len(assigned)} backbone variables from {train_config.init_weights}")
        elif model_fn is None:
            out.write(f"training {model_config.describe()} from scratch")
    if is_chief:
        previous = ckpt_io.read_train_config(run_dir)
        if latest and previous is not None and previous != train_config:
            changed = [k for k, v in train_config.to_dict().items() if previous.to_dict().get(k) != v]
            out.write(f"note: train config changed since the last start: {', '.join(changed)}")
        model_config.save(run_dir / ckpt_io.CONFIG_FILE)
        train_config.save(run_dir / ckpt_io.TRAIN_CONFIG_FILE)

    result = TrainResult(run_dir, start, start, train_config.steps, None, float("nan"), float("nan"),
                         float("nan"), 0.0, latest, replicas=strategy.num_replicas_in_sync, model=model)
    if start >= train_config.steps:
        out.write(f"already trained: step {start} >= --steps {train_config.steps}")
        last = _read_summary(run_dir)  # the figures of the session that got there, not NaN
        if last.get("step") == start:
            result.loss, result.running_miou = (float("nan") if last.get(k) is None else float(last[k])
                                                for k in ("loss", "running_miou"))
        return result

    # --- data ---
    if dataset is None:
        dataset = make_train_dataset(data_dir, model_config, train_config, seed=train_config.seed + start)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    dist_dataset = strategy.experimental_distribute_dataset(dataset)
    iterator = iter(dist_dataset)

    # --- step function ---
    num_classes = model_config.num_classes
    global_batch = train_config.batch_size
    class_weights = train_config.class_weights
    decay_vars = [layer.kernel for layer in model.layers
                  if type(layer).__name__ == "Conv2D" and layer.trainable]
    wd = train_config.weight_decay

    distill_weight = train_config.distill_weight

    def replica_step(images, masks, soft_target=None, soft_weight=None):
        masks = tf.cast(masks, tf.int32)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_image = pixel_cross_entropy(masks, logits, ignore_label=IGNORE_LABEL,
                                            class_weights=class_weights)
            if soft_target is not None and distill_weight > 0:
                per_image = per_image + distill_weight * soft_label_loss(soft_target, soft_weight, logits)
            data_loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            reg = wd * tf.add_n([tf.nn.l2_loss(v) for v in decay_vars]) if wd > 0 and decay_vars else 0.0
            loss = data_loss + reg / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        valid = tf.logical_and(tf.not_equal(masks, IGNORE_LABEL), masks < num_classes)
        idx = tf.boolean_mask(masks * num_classes + pred, valid)
        counts = tf.math.bincount(idx, minlength=num_classes * num_classes,
                                  maxlength=num_classes * num_classes, dtype=tf.int64)
        return data_loss, counts

    @tf.function
    def train_step(batch, stop_request):
        loss, counts = strategy.run(replica_step, args=tuple(batch))
        # Summed over every replica of every worker: all of them see a signal that reached
        # any one, after the same step, and stop there together (a lone worker saving
        # while the others run the next step mismatches their collectives).
        stops = strategy.run(tf.identity, args=(stop_request,))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, stops, axis=None))

    # --- logging ---
    if is_chief:
        writer = tf.summary.create_file_writer(str(run_dir / ckpt_io.TENSORBOARD_DIR))
    else:
        writer = tf.summary.create_noop_writer()
    preview = None
    window = collections.deque(maxlen=max(train_config.log_every, 20))
    times = collections.deque(maxlen=max(train_config.log_every, 20))

    def save(step: int) -> str:
        step_var.assign(step)
        path = manager.save(checkpoint_number=step)
        if is_chief:
            _write_summary(run_dir, result)
        return path

    step = start
    t_start = time.perf_counter()
    t_prev = None
    images_done = 0
    timed_s = 0.0
    loss = float("nan")
    cm = ConfusionMatrix(num_classes)
    stopped_by = None
    strategy_name = train_config.strategy
    out.start(start)
    try:
        while step < train_config.steps:
            batch = next(iterator)
            if preview is None and is_chief and train_config.strategy != "multiworker":
                preview = _first_replica_numpy(strategy, batch)
            loss_t, counts_t, stops_t = train_step(batch, tf.constant(
                [stop.signal == name for name in SIGNAL_NAMES], tf.int32))
            loss = float(loss_t.numpy())
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {step + 1}; "
                                         f"lower --learning-rate")
            step += 1
            now = time.perf_counter()
            if t_prev is not None:  # the first step includes tracing: not timed
                times.append(now - t_prev)
                timed_s += now - t_prev
                images_done += global_batch
            t_prev = now
            window.append(counts_t.numpy())
            cm.reset()
            for c in window:
                cm.add_counts(c)
            ips = global_batch * len(times) / sum(times) if times else float("nan")
            eta = (train_config.steps - step) * (sum(times) / len(times)) if times else float("nan")
            miou = cm.miou()
            result.step, result.loss, result.running_miou = step, loss, miou
            result.images_per_sec = images_done / timed_s if timed_s else float("nan")
            result.wall_s = time.perf_counter() - t_start
            out.update(step, loss, miou, ips, eta)
            if on_step is not None:
                on_step(step, loss)
            if step % train_config.log_every == 0 or step == train_config.steps:
                result.history.append((step, loss))
                with writer.as_default(step=step):
                    tb_scalar("loss", loss)
                    tb_scalar("running_miou", miou)
                    tb_scalar("learning_rate", float(poly_learning_rate(step, train_config)))
                    if math.isfinite(ips):
                        tb_scalar("images_per_sec", ips)
            if step % train_config.checkpoint_every == 0 or step == train_config.steps:
                result.checkpoint = save(step)
                if is_chief and preview is not None and train_config.strategy != "multiworker":
                    # (multiworker: a forward pass outside strategy.run would wait on
                    # collectives the other workers never join)
                    with writer.as_default(step=step):
                        _image_summary(model, preview, model_config)
                writer.flush()
            stops = stops_t.numpy()
            if stops.any() or (stop.signal and strategy_name != "multiworker"):
                stopped_by = stop.signal or SIGNAL_NAMES[int(np.argmax(stops))]
                break
        if stopped_by and step < train_config.steps:
            if step % train_config.checkpoint_every != 0:
                result.checkpoint = save(step)
            result.interrupted = stopped_by
            who = "" if stop.signal else " (sent to another worker)"
            out.write(f"{stopped_by}{who}: saved checkpoint at step {step}; rerun the same command "
                      f"{'on every worker ' if strategy_name == 'multiworker' else ''}to resume")
    finally:
        out.close()
        writer.flush()
        if not is_chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    if is_chief:
        _write_summary(run_dir, result)
    return result


# TensorBoard event records written with tf.summary.write and the plugin names TensorBoard
# reads, so that training does not depend on the tensorboard package (only viewing does).

def tb_scalar(tag: str, value: float) -> None:
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=meta)


def tb_image(tag: str, images: np.ndarray) -> None:
    """uint8 [N, H, W, 3] images as one TensorBoard image summary (PNG-encoded)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"))
    h, w = images.shape[1:3]
    pngs = [tf.io.encode_png(im).numpy() for im in images]
    tf.summary.write(tag, tf.constant([str(w).encode(), str(h).encode()] + pngs), metadata=meta)


def _first_replica_numpy(strategy, batch):
    images, masks = batch[:2]
    images = strategy.experimental_local_results(images)[0]
    masks = strategy.experimental_local_results(masks)[0]
    return images.numpy()[:PREVIEW_IMAGES], masks.numpy()[:PREVIEW_IMAGES]


def _image_summary(model, preview, cfg: ModelConfig) -> None:
    """TensorBoard image: per row, ground-truth overlay | prediction overlay."""
    import tensorflow as tf
    from mobile_seg.data.palette import overlay
    images, masks = preview
    logits = model(images, training=False).numpy()
    preds = logits.argmax(-1).astype(np.uint8)
    rgb = np.clip(images * np.array(cfg.input_std) + np.array(cfg.input_mean), 0, 255).astype(np.uint8)
    rows = [np.concatenate([overlay(im, m.astype(np.uint8)), overlay(im, p)], axis=1)
            for im, m, p in zip(rgb, masks, preds)]
    tb_image("truth_vs_prediction", np.stack(rows))


def _read_summary(run_dir: Path) -> dict:
    path = run_dir / ckpt_io.SUMMARY_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def _write_summary(run_dir: Path, result: TrainResult) -> None:
    path = run_dir / ckpt_io.SUMMARY_FILE
    previous = _read_summary(run_dir)
    d = result.to_dict()
    # wall time and img/s accumulate over restarts: keep the finished sessions' totals.
    sessions = previous.get("sessions", [])
    current = {"start_step": result.start_step, "step": result.step, "wall_s": _r(result.wall_s),
               "images_per_sec": _r(result.images_per_sec)}
    sessions = [s for s in sessions if s.get("start_step") != result.start_step] + [current]
    d["sessions"] = sessions
    d["total_wall_s"] = _r(sum(s.get("wall_s") or 0 for s in sessions))
    write_json_atomic(path, d)


# --- configuration resolution (CLI) -------------------------------------------------------------

def resolve_configs(run_dir: str | os.PathLike, config_file: str | os.PathLike | None = None,
                    model_overrides: dict | None = None,
                    train_overrides: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Defaults <- RUN_DIR's saved configs (resuming) <- --config FILE <- explicit flags.

    Flags left out (None) keep the lower layers' value, so rerunning with fewer flags
    resumes the same run. A resolved ModelConfig that differs from RUN_DIR/config.json
    raises ConfigError (one line naming the differing fields).
    """
    from mobile_seg.config import load_config_file
    run_dir = Path(run_dir)
    model_d = ModelConfig().to_dict()
    train_d = TrainConfig().to_dict()
    saved_model = None
    if (run_dir / ckpt_io.CONFIG_FILE).is_file():
        saved_model = ModelConfig.load(run_dir / ckpt_io.CONFIG_FILE)
        model_d.update(saved_model.to_dict())
    saved_train = ckpt_io.read_train_config(run_dir) if run_dir.is_dir() else None
    if saved_train is not None:
        train_d.update(saved_train.to_dict())
    if config_file is not None:
        file_model, file_train = load_config_file(config_file)
        model_d.update(file_model)
        train_d.update(file_train)
    model_d = apply_overrides(model_d, model_overrides or {})
    train_d = apply_overrides(train_d, train_overrides or {})
    model_config = ModelConfig.from_dict(model_d)
    train_config = TrainConfig.from_dict(train_d)
    if saved_model is not None and saved_model != model_config:
        raise ConfigError(f"{run_dir / ckpt_io.CONFIG_FILE}: the checkpoint's model config does not match "
                          f"the flags ({'; '.join(saved_model.diff(model_config))}); "
                          f"use matching flags or another --out")
    return model_config, train_config


def apply_overrides(base: dict, overrides: dict) -> dict:
    """`base` updated with the overrides that were given: None = not given, "none" = None."""
    out = dict(base)
    out.update({k: (None if v == "none" else v) for k, v in overrides.items() if v is not None})
    return out
