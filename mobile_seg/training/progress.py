"""What a run reports: the terminal progress line or bar, running figures (loss, mIoU over
a window of steps, img/s, ETA), TensorBoard scalars and overlays, train_summary.json.

TensorBoard records are written with `tf.summary.write` and the plugin names TensorBoard
reads, so that training does not depend on the tensorboard package (only viewing does).
"""
from __future__ import annotations

import collections
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_seg import checkpoint as ckpt_io
from mobile_seg.config import ModelConfig
from mobile_seg.io_utils import write_json_atomic
from mobile_seg.metrics import ConfusionMatrix

PREVIEW_IMAGES = 3


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


class Progress:
    """A tqdm bar on a terminal; one log line every `every` steps otherwise (logs, nohup)."""

    def __init__(self, total: int, every: int, enabled: bool = True, stream=None):
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


class Meter:
    """Running figures of a session: mIoU over the last steps' confusion counts, img/s and
    ETA from step times (the first step, which traces the graph, is not timed)."""

    def __init__(self, num_classes: int, batch_size: int, total_steps: int, window: int):
        self.batch_size, self.total = batch_size, total_steps
        self.counts = collections.deque(maxlen=max(window, 20))
        self.times = collections.deque(maxlen=max(window, 20))
        self.cm = ConfusionMatrix(num_classes)
        self.t_start = time.perf_counter()
        self.t_prev = None
        self.images = 0
        self.timed_s = 0.0

    def step(self, counts: np.ndarray) -> None:
        now = time.perf_counter()
        if self.t_prev is not None:
            self.times.append(now - self.t_prev)
            self.timed_s += now - self.t_prev
            self.images += self.batch_size
        self.t_prev = now
        self.counts.append(counts)

    def miou(self) -> float:
        self.cm.reset()
        for c in self.counts:
            self.cm.add_counts(c)
        return self.cm.miou()

    def recent_ips(self) -> float:
        return self.batch_size * len(self.times) / sum(self.times) if self.times else float("nan")

    def session_ips(self) -> float:
        return self.images / self.timed_s if self.timed_s else float("nan")

    def eta_s(self, step: int) -> float:
        return (self.total - step) * (sum(self.times) / len(self.times)) if self.times else float("nan")

    def wall_s(self) -> float:
        return time.perf_counter() - self.t_start


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


def first_replica_numpy(strategy, batch) -> tuple[np.ndarray, np.ndarray]:
    """The first images and masks of a (distributed) batch, for the preview overlay."""
    images, masks = batch[:2]
    images = strategy.experimental_local_results(images)[0]
    masks = strategy.experimental_local_results(masks)[0]
    return images.numpy()[:PREVIEW_IMAGES], masks.numpy()[:PREVIEW_IMAGES]


def image_summary(model, preview, cfg: ModelConfig) -> None:
    """TensorBoard image: per row, ground-truth overlay | prediction overlay."""
    from mobile_seg.data.palette import overlay
    images, masks = preview
    logits = model(images, training=False).numpy()
    preds = logits.argmax(-1).astype(np.uint8)
    rgb = np.clip(images * np.array(cfg.input_std) + np.array(cfg.input_mean), 0, 255).astype(np.uint8)
    rows = [np.concatenate([overlay(im, m.astype(np.uint8)), overlay(im, p)], axis=1)
            for im, m, p in zip(rgb, masks, preds)]
    tb_image("truth_vs_prediction", np.stack(rows))


def read_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / ckpt_io.SUMMARY_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def write_summary(run_dir: Path, result: TrainResult) -> None:
    """train_summary.json: the result, plus wall time and img/s of every session (they
    accumulate over restarts)."""
    d = result.to_dict()
    sessions = read_summary(run_dir).get("sessions", [])
    current = {"start_step": result.start_step, "step": result.step, "wall_s": _r(result.wall_s),
               "images_per_sec": _r(result.images_per_sec)}
    d["sessions"] = [s for s in sessions if s.get("start_step") != result.start_step] + [current]
    d["total_wall_s"] = _r(sum(s.get("wall_s") or 0 for s in d["sessions"]))
    write_json_atomic(Path(run_dir) / ckpt_io.SUMMARY_FILE, d)
