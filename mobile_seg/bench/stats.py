"""Latency statistics and the Pareto front: pure numpy, no model code."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Latency summary in milliseconds. Fields a source does not give are None
    (TFLite's benchmark_model prints no p90/p99, older builds no median)."""

    runs: int
    mean_ms: float
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyStats":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """Summarise per-run latencies given in seconds.

    Percentiles use linear interpolation between order statistics (numpy's default,
    the same as `statistics.quantiles(method="inclusive")`); std is the population one,
    as benchmark_model's.
    """
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.ndim != 1 or ms.size == 0:
        raise ValueError("latency_stats needs a non-empty 1-D sequence")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(runs=int(ms.size), mean_ms=float(ms.mean()), median_ms=float(p50),
                        p90_ms=float(p90), p99_ms=float(p99), min_ms=float(ms.min()),
                        max_ms=float(ms.max()), std_ms=float(ms.std()))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats: none is at least
    as fast and at least as accurate while strictly better in one. Sorted by latency."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            (l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc)
            for j, (l2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
