"""The training loop every task runs on (`train` and `qat`): tf.distribute strategy,
checkpoints and resume, the stop flag shared by every worker, the step function.

`run(task, data, run_dir)` locks RUN_DIR, builds the task's model in the strategy scope,
restores RUN_DIR's newest checkpoint if there is one (resume), then steps until
`train_config.steps`: checkpoints every N steps, on SIGINT/SIGTERM (after the current
step, on every worker at the same step) and at the end.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mobile_seg import checkpoint as ckpt_io
from mobile_seg import cluster
from mobile_seg.errors import TrainingDiverged
from mobile_seg.io_utils import check_output_path
from mobile_seg.locks import folder_lock, note_stale
from mobile_seg.signals import StopFlag, stop_on_signals
from mobile_seg.spec import IGNORE_LABEL
from mobile_seg.training.progress import (Meter, Progress, TrainResult, first_replica_numpy, image_summary,
                                          read_summary, tb_scalar, write_summary)
from mobile_seg.training.task import Task, make_loss_fn, make_optimizer, poly_learning_rate

SIGNAL_NAMES = ("SIGINT", "SIGTERM")   # the stop request each step shares between workers


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


def run(task: Task, data_dir, run_dir, *, progress: bool = True, dataset=None,
        on_step: Callable[[int, float], None] | None = None, stream=None,
        startup_timeout: float = cluster.DEFAULT_STARTUP_TIMEOUT) -> TrainResult:
    """Train (or resume) `task` into `run_dir` on the built dataset(s) `data_dir`.

    dataset: global batches to use instead of the input pipeline (benchmarks, tests).
    on_step: called as on_step(step, loss) after every step. Returns a TrainResult whose
    `interrupted` names the signal when SIGINT/SIGTERM stopped it (that step is saved).
    RUN_DIR is locked: a second process writing there is refused with a line naming the first.
    """
    run_dir = Path(run_dir)
    check_output_path(run_dir, "dir")
    multiworker = task.train_config.strategy == "multiworker"
    # Only the chief writes RUN_DIR; the other workers share it (their checkpoints are throw-away).
    chief = not multiworker or cluster.is_chief(cluster.read_tf_config())
    with folder_lock(run_dir, task.command) if chief else contextlib.nullcontext() as lock:
        if lock is not None and progress:
            note_stale(lock, stream)
        strategy = None
        if multiworker:  # before other TF work, as MultiWorkerMirroredStrategy needs
            with stop_on_signals("stopped while waiting for the other workers; nothing was trained"):
                cluster.wait_for_workers(cluster.read_tf_config(), startup_timeout,
                                         log=lambda m: print(m, file=stream or sys.stderr, flush=True))
                strategy = make_strategy("multiworker")
        with StopFlag() as stop:  # from here on a signal stops after the current step, saved
            return _run(task, data_dir, run_dir, strategy, stop, progress=progress, dataset=dataset,
                        on_step=on_step, stream=stream)


@dataclass
class Session:
    """What one start of a run holds while it steps."""

    task: Task
    run_dir: Path
    strategy: object
    is_chief: bool
    model: object
    optimizer: object
    step_var: object
    manager: object
    start: int
    out: Progress
    writer: object
    result: TrainResult

    def save(self, step: int) -> str:
        self.step_var.assign(step)
        path = self.manager.save(checkpoint_number=step)
        if self.is_chief:
            write_summary(self.run_dir, self.result)
        return path


def _run(task: Task, data_dir, run_dir: Path, strategy, stop: StopFlag, *, progress, dataset, on_step,
         stream) -> TrainResult:
    """`run` once RUN_DIR is locked and the strategy (multiworker) exists."""
    from mobile_seg.data.augment import data_dirs, make_train_dataset
    from mobile_seg.training.checks import check_inputs
    check_inputs(data_dir, run_dir, task.model_config, task.train_config)
    session, done = open_session(task, run_dir, strategy, progress, stream)
    if done:
        return session.result
    import tensorflow as tf
    tc = task.train_config
    if dataset is None:
        dataset = make_train_dataset(data_dirs(data_dir), task.model_config, tc, seed=tc.seed + session.start)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    iterator = iter(session.strategy.experimental_distribute_dataset(dataset.with_options(options)))
    workdir = session.manager.directory
    try:
        step_loop(session, iterator, make_step_fn(session), stop, on_step)
    finally:
        session.out.close()
        session.writer.flush()
        if not session.is_chief:
            shutil.rmtree(workdir, ignore_errors=True)
    if session.is_chief:
        write_summary(run_dir, session.result)
    return session.result


def open_session(task: Task, run_dir: Path, strategy, progress: bool, stream) -> tuple[Session, bool]:
    """Strategy, model (the task's, or restored from RUN_DIR's newest checkpoint), optimizer,
    checkpoint manager and logs; configs saved. Returns (session, already finished)."""
    import tensorflow as tf
    import tf_keras
    mc, tc = task.model_config, task.train_config
    strategy = strategy or make_strategy(tc.strategy)
    is_chief, role = worker_role(strategy)
    out = Progress(tc.steps, tc.log_every, enabled=progress and is_chief, stream=stream)
    tf_keras.utils.set_random_seed(tc.seed)
    ckpt_dir = run_dir / ckpt_io.CHECKPOINT_DIR
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = ckpt_io.latest_checkpoint(run_dir)
    with strategy.scope():
        model = task.make_model(latest is not None, out.write)
        optimizer = make_optimizer(tc)
        optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir if is_chief else ckpt_dir / f".{role}"),
                                         max_to_keep=tc.keep_checkpoints)
    start = 0
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        start = int(step_var.numpy())
        out.write(f"resuming {run_dir} from step {start} ({latest})")
    if is_chief:
        _save_configs(task, run_dir, resumed=latest is not None, log=out.write)
        writer = tf.summary.create_file_writer(str(run_dir / ckpt_io.TENSORBOARD_DIR))
    else:
        writer = tf.summary.create_noop_writer()
    result = TrainResult(run_dir, start, start, tc.steps, None, float("nan"), float("nan"), float("nan"),
                         0.0, latest, replicas=strategy.num_replicas_in_sync, model=model)
    session = Session(task, run_dir, strategy, is_chief, model, optimizer, step_var, manager, start, out,
                      writer, result)
    if start >= tc.steps:
        out.write(f"already trained: step {start} >= --steps {tc.steps}")
        last = read_summary(run_dir)  # the figures of the session that got there, not NaN
        if last.get("step") == start:
            result.loss, result.running_miou = (float("nan") if last.get(k) is None else float(last[k])
                                                for k in ("loss", "running_miou"))
        return session, True
    return session, False


def _save_configs(task: Task, run_dir: Path, resumed: bool, log) -> None:
    previous = ckpt_io.read_train_config(run_dir)
    if resumed and previous is not None and previous != task.train_config:
        changed = [k for k, v in task.train_config.to_dict().items() if previous.to_dict().get(k) != v]
        log(f"note: train config changed since the last start: {', '.join(changed)}")
    task.model_config.save(run_dir / ckpt_io.CONFIG_FILE)
    task.train_config.save(run_dir / ckpt_io.TRAIN_CONFIG_FILE)


def make_step_fn(session: Session):
    """train_step(batch, stop_request) -> (loss, confusion counts, stop requests), summed over
    every replica of every worker."""
    import tensorflow as tf
    model, optimizer, strategy = session.model, session.optimizer, session.strategy
    n = session.task.model_config.num_classes
    loss_fn = make_loss_fn(model, session.task.train_config, strategy.num_replicas_in_sync)

    def replica_step(images, masks, soft_target=None, soft_weight=None):
        masks = tf.cast(masks, tf.int32)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            data_loss, loss = loss_fn(logits, masks, soft_target, soft_weight)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
        valid = tf.logical_and(tf.not_equal(masks, IGNORE_LABEL), masks < n)
        counts = tf.math.bincount(tf.boolean_mask(masks * n + pred, valid), minlength=n * n,
                                  maxlength=n * n, dtype=tf.int64)
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

    return train_step


def step_loop(session: Session, iterator, train_step, stop: StopFlag, on_step) -> None:
    """Step from session.start to the configured steps, logging and checkpointing; stop
    after the step in which any worker got a signal (saved)."""
    import tensorflow as tf
    tc, result, out = session.task.train_config, session.result, session.out
    multiworker = tc.strategy == "multiworker"
    meter = Meter(session.task.model_config.num_classes, tc.batch_size, tc.steps, tc.log_every)
    preview, step, stopped_by = None, session.start, None
    out.start(step)
    while step < tc.steps:
        batch = next(iterator)
        if preview is None and session.is_chief and not multiworker:
            preview = first_replica_numpy(session.strategy, batch)
        request = tf.constant([stop.signal == name for name in SIGNAL_NAMES], tf.int32)
        loss_t, counts_t, stops_t = train_step(batch, request)
        loss = float(loss_t.numpy())
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {step + 1}; lower --learning-rate "
                                   f"(the last checkpoint is kept)", session.run_dir)
        step += 1
        meter.step(counts_t.numpy())
        result.step, result.loss, result.running_miou = step, loss, meter.miou()
        result.images_per_sec, result.wall_s = meter.session_ips(), meter.wall_s()
        out.update(step, loss, result.running_miou, meter.recent_ips(), meter.eta_s(step))
        if on_step is not None:
            on_step(step, loss)
        if step % tc.log_every == 0 or step == tc.steps:
            _log_scalars(session, step, meter)
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            result.checkpoint = session.save(step)
            if session.is_chief and preview is not None and not multiworker:
                # (multiworker: a forward pass outside strategy.run would wait on
                # collectives the other workers never join)
                with session.writer.as_default(step=step):
                    image_summary(session.model, preview, session.task.model_config)
            session.writer.flush()
        stops = stops_t.numpy()
        if stops.any() or (stop.signal and not multiworker):
            stopped_by = stop.signal or SIGNAL_NAMES[int(np.argmax(stops))]
            break
    if stopped_by and step < tc.steps:
        if step % tc.checkpoint_every != 0:
            result.checkpoint = session.save(step)
        result.interrupted = stopped_by
        who = "" if stop.signal else " (sent to another worker)"
        out.write(f"{stopped_by}{who}: saved checkpoint at step {step}; rerun the same command "
                  f"{'on every worker ' if multiworker else ''}to resume")


def _log_scalars(session: Session, step: int, meter: Meter) -> None:
    result = session.result
    result.history.append((step, result.loss))
    with session.writer.as_default(step=step):
        tb_scalar("loss", result.loss)
        tb_scalar("running_miou", result.running_miou)
        tb_scalar("learning_rate", float(poly_learning_rate(step, session.task.train_config)))
        if math.isfinite(meter.recent_ips()):
            tb_scalar("images_per_sec", meter.recent_ips())
