"""Sustained runs: latency over time, and the drift between the start and the end of a run.

A phone that heats up clocks its cores down after tens of seconds; a one-second benchmark
never sees it. `bench --duration S` keeps the interleaved rounds going for S seconds,
records when each run started, and reports per model the median of the first and of the
last tenth of its runs (by time) and the drift between them, `last / first - 1`. A
positive drift is a slow-down.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mobile_seg.errors import ConfigError
from mobile_seg.io_utils import atomic_path


@dataclass(frozen=True)
class Drift:
    """First-tenth vs last-tenth median latency of one sustained series."""

    seconds: float
    runs: int
    first_ms: float
    last_ms: float

    @property
    def drift_pct(self) -> float:
        return 100.0 * (self.last_ms / self.first_ms - 1.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "drift_pct": self.drift_pct}


def drift(times_s: Sequence[float], latency_ms: Sequence[float]) -> Drift:
    """Medians of the runs that started in the first and in the last tenth of the time span.

    Split by time, not by count, so a throttled end (fewer, slower runs) is weighed by the
    seconds it lasted. Each tenth holds at least one run.
    """
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(latency_ms, dtype=np.float64)
    if t.size == 0 or t.size != v.size:
        raise ValueError("drift needs as many times as latencies, at least one")
    t0, t1 = float(t.min()), float(t.max())
    span = t1 - t0
    first = v[t <= t0 + span / 10] if span > 0 else v[:1]
    last = v[t >= t1 - span / 10] if span > 0 else v[-1:]
    return Drift(seconds=span, runs=int(t.size), first_ms=float(np.median(first)), last_ms=float(np.median(last)))


def check_duration(duration: float | None) -> None:
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration: expected a number of seconds > 0, got {duration}")


def plot_sustained(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
                   title: str, window: int = 15) -> dict:
    """Latency over time per series ({label: (times s, latency ms)}): each run as a faint dot, a
    rolling median of `window` runs as a line, the first and last tenth shaded (the drift's
    medians, in the legend); written atomically (format from the extension)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    if fmt not in fig.canvas.get_supported_filetypes():
        plt.close(fig)
        raise ConfigError(f"--plot: unsupported image format .{fmt} (use .png, .svg or .pdf)", path)
    try:
        span = max((float(np.max(t)) for t, _ in series.values() if len(t)), default=0.0)
        if span > 0:  # the two tenths the drift compares
            ax.axvspan(0, span / 10, color="0.85", zorder=0)
            ax.axvspan(span * 0.9, span, color="0.85", zorder=0)
        for k, (label, (t, v)) in enumerate(series.items()):
            t, v = np.asarray(t), np.asarray(v)
            color = f"C{k}"
            d = drift(t, v)
            label = f"{label}: {d.first_ms:.2f} → {d.last_ms:.2f} ms, drift {d.drift_pct:+.1f}%"
            ax.scatter(t, v, s=3, alpha=0.25, color=color, linewidths=0)
            if v.size >= window:
                roll = np.array([np.median(v[max(0, i - window + 1):i + 1]) for i in range(v.size)])
                ax.plot(t, roll, color=color, linewidth=1.4, label=f"{label} (line: rolling median of {window})")
            else:
                ax.plot(t, v, color=color, linewidth=1.0, label=label)
        hi = max((np.percentile(v, 99) for _, v in series.values() if len(v)), default=1.0)
        ax.set_ylim(0, hi * 1.15)
        ax.set_xlabel("time since the first timed run (s)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return {"kind": "sustained", "series": list(series)}
