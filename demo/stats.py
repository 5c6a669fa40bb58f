"""Per-stage timing of the frame loop, and the mask-quality measures used on video.

`StageTimes` accumulates milliseconds per named stage and turns them into the table
`--stats` prints. `flicker`, `iou` and `mask_lag` measure temporal stability, accuracy
and delay of a mask sequence against ground truth (DAVIS-style sequences).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterable, Iterator

import numpy as np

# Order and meaning of the stages in the --stats table.
STAGES = {
    "capture": "decode/grab (reader thread, overlaps the rest)",
    "wait": "main loop waiting for a frame and its model output",
    "inference": "model, in the segment-ahead thread (only frames it ran on)",
    "postprocess": "upsample, temporal smoothing, guided filter, feather",
    "compositing": "background effect + blend",
    "output": "handing the frame to the writer (main loop)",
    "encode": "video encoding (writer thread, overlaps the rest)",
    "display": "window draw + key poll",
}


class StageTimes:
    """Milliseconds spent per stage, and frame counts."""

    def __init__(self):
        self.total_ms: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.frames = 0
        self.inferred = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.cpu_started = 0.0
        self.cpu_finished = 0.0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1000.0)

    def add(self, name: str, ms: float, count: int = 1) -> None:
        self.total_ms[name] = self.total_ms.get(name, 0.0) + ms
        self.count[name] = self.count.get(name, 0) + count

    def start(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = self.cpu_finished = time.process_time()

    def frame_done(self, inferred: bool) -> None:
        self.frames += 1
        self.inferred += int(inferred)
        self.finished = time.perf_counter()
        self.cpu_finished = time.process_time()

    @property
    def wall_s(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return self.finished - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def per_frame_ms(self, name: str) -> float:
        """Mean ms per processed frame (inference: per frame the model ran on)."""
        n = self.inferred if name == "inference" else self.frames
        return self.total_ms.get(name, 0.0) / n if n else 0.0

    def summary(self) -> dict:
        stages = {name: round(self.per_frame_ms(name), 3) for name in STAGES if name in self.total_ms}
        amortised = self.total_ms.get("inference", 0.0) / self.frames if self.frames else 0.0
        cpu = (self.cpu_finished - self.cpu_started) * 1000.0 / self.frames if self.frames else 0.0
        return {"frames": self.frames, "inferred_frames": self.inferred, "wall_s": round(self.wall_s, 3),
                "fps": round(self.fps, 2), "ms_per_frame": stages,
                "inference_ms_amortised": round(amortised, 3),
                # CPU time of all the process's threads per frame: what the frame costs
                # regardless of how busy the machine is.
                "cpu_ms_per_frame": round(cpu, 3), "cpus": os.cpu_count(),
                "load_average": round(os.getloadavg()[0], 2)}

    def table(self) -> str:
        """The human-readable --stats block."""
        return format_summary(self.summary())


def format_summary(s: dict) -> str:
    """The --stats table from a `StageTimes.summary()` dict."""
    lines = [f"{'stage':<13}{'ms/frame':>9}  what"]
    for name, ms in s["ms_per_frame"].items():
        note = STAGES.get(name, "")
        if name == "inference":
            note += f"; {s['inferred_frames']} of {s['frames']} frames"
            if s["inferred_frames"] < s["frames"]:
                note += f" = {s['inference_ms_amortised']:.2f} ms/frame amortised"
        lines.append(f"{name:<13}{ms:>9.2f}  {note}")
    ms_frame = 1000.0 / s["fps"] if s["fps"] else 0.0
    lines.append(f"end-to-end: {s['frames']} frames in {s['wall_s']:.2f} s = {s['fps']:.1f} FPS "
                 f"({ms_frame:.1f} ms/frame)")
    if "cpu_ms_per_frame" in s:
        lines.append(f"CPU: {s['cpu_ms_per_frame']:.1f} ms per frame over all threads; load average "
                     f"{s['load_average']:.2f} on {s['cpus']} CPUs")
    return "\n".join(lines)


def flicker(masks: Iterable[np.ndarray]) -> float:
    """Mean fraction of pixels whose label changes between consecutive masks."""
    changes, prev = [], None
    for m in masks:
        m = np.asarray(m) > 0
        if prev is not None:
            changes.append(float(np.mean(m != prev)))
        prev = m
    return float(np.mean(changes)) if changes else 0.0


def iou(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two binary masks (person = nonzero)."""
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def mask_lag(preds: list[np.ndarray], gts: list[np.ndarray], max_lag: int = 3) -> float:
    """How many frames the predicted masks trail the ground truth (negative: lead).

    For each shift k in [-max_lag, max_lag] the sequence IoU of pred[t] against gt[t - k]
    is computed over the same frames; the lag is the k where that peaks, refined to a
    fraction of a frame by fitting a symmetric tent through the peak and its neighbours
    (exact when IoU falls linearly with the shift, as it does for steady motion). A mask
    that ignores motion entirely has no defined lag; this returns the best shift anyway.
    """
    t_count = len(preds)
    k_max = min(max_lag, (t_count - 1) // 2)
    if k_max < 1:
        return 0.0
    p = [np.asarray(x) > 0 for x in preds]
    g = [np.asarray(x) > 0 for x in gts]
    scores = []
    for k in range(-k_max, k_max + 1):
        inter = union = 0
        for t in range(k_max, t_count - k_max):
            i, u = iou(p[t], g[t - k])
            inter, union = inter + i, union + u
        scores.append(inter / union if union else 1.0)
    j = int(np.argmax(scores))
    lag = float(j - k_max)
    if 0 < j < 2 * k_max:
        below = scores[j] - min(scores[j - 1], scores[j + 1])
        if below > 0:
            lag += (scores[j + 1] - scores[j - 1]) / (2.0 * below)
    return lag
