"""Benchmark results and their three forms: a table, JSON, CSV.

The host harness and the adb runner both fill a `BenchResult`; everything printed or
written comes from here, so a phone table reads like a desktop one.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

from mobile_seg.bench.stats import LatencyStats
from mobile_seg.io_utils import atomic_path

FORMAT = "mobile-seg-bench/1"

CSV_COLUMNS = ["model", "path", "input_shape", "input_dtype", "size_bytes", "ops_int8", "ops_float",
               "float_convs", "threads", "init_ms", "first_ms", "mean_ms", "median_ms", "p90_ms",
               "p99_ms", "min_ms", "max_ms", "std_ms", "runs", "ratio", "ratio_of", "peak_rss_mb"]


@dataclass
class ModelInfo:
    """What the file says about itself: read once, before any timing."""

    path: str
    name: str
    input_shape: list[int]
    input_dtype: str
    input_quantization: list[float] | None
    size_bytes: int
    census: dict
    metadata_name: str | None = None
    variant: str | None = None
    metrics: dict | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Measurement:
    """One model at one thread count."""

    threads: int
    latency: LatencyStats
    init_ms: float | None = None
    first_ms: float | None = None
    peak_rss_mb: float | None = None
    ratio: float | None = None
    ratio_of: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("latency", "extra")}
        d["latency"] = self.latency.to_dict()
        d.update(self.extra)
        return d


@dataclass
class ModelResult:
    info: ModelInfo
    measurements: list[Measurement] = field(default_factory=list)

    def at(self, threads: int) -> Measurement | None:
        return next((m for m in self.measurements if m.threads == threads), None)


@dataclass
class BenchResult:
    """Everything one `bench` run measured. The first model is the reference.

    `target` is "host" or "adb"; `settings` the flags; `environment` the machine (host CPU
    and load, or the phone's model and ABI); `notes` the lines printed under the table.
    """

    target: str
    settings: dict
    environment: dict
    models: list[ModelResult]
    notes: list[str] = field(default_factory=list)
    series: dict = field(default_factory=dict)  # sustained runs: {label: (start times s, latency ms)}
    profiles: list = field(default_factory=list)  # OpProfile per model (--op-profile)

    @property
    def threads(self) -> list[int]:
        return list(self.settings["threads"])

    def assign_ratios(self) -> None:
        """Ratio of each model's latency to the reference's at the same thread count: the
        median when both have one (benchmark_model before 2.13 prints none), else the mean."""
        if not self.models:
            return
        for t in self.threads:
            ref = self.models[0].at(t)
            for mr in self.models:
                m = mr.at(t)
                if m is None or ref is None:
                    continue
                if m.latency.median_ms is not None and ref.latency.median_ms:
                    m.ratio, m.ratio_of = m.latency.median_ms / ref.latency.median_ms, "median"
                elif ref.latency.mean_ms:
                    m.ratio, m.ratio_of = m.latency.mean_ms / ref.latency.mean_ms, "mean"

    def rows(self) -> list[dict]:
        """One flat dict per (thread count, model), thread counts outermost: the table/CSV rows."""
        out = []
        for t in self.threads:
            for mr in self.models:
                m = mr.at(t)
                if m is None:
                    continue
                info, lat = mr.info, m.latency
                out.append({
                    "model": info.name, "path": info.path,
                    "input_shape": "x".join(str(d) for d in info.input_shape),
                    "input_dtype": info.input_dtype, "size_bytes": info.size_bytes,
                    "ops_int8": info.census.get("int8"), "ops_float": info.census.get("float"),
                    "float_convs": info.census.get("float_convs"), "threads": t,
                    "init_ms": m.init_ms, "first_ms": m.first_ms, "mean_ms": lat.mean_ms,
                    "median_ms": lat.median_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms,
                    "min_ms": lat.min_ms, "max_ms": lat.max_ms, "std_ms": lat.std_ms,
                    "runs": lat.runs, "ratio": m.ratio, "ratio_of": m.ratio_of,
                    "peak_rss_mb": m.peak_rss_mb,
                })
        return out

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "target": self.target, "settings": self.settings,
            "environment": self.environment,
            "reference": self.models[0].info.name if self.models else None,
            "models": [{**mr.info.to_dict(), "results": [m.to_dict() for m in mr.measurements]}
                       for mr in self.models],
            "notes": self.notes,
        }


# --- table -----------------------------------------------------------------------------

TABLE_HEADER = ["model", "input", "size", "ops int8/float", "threads", "init ms", "min ms", "mean ms",
                "median ms", "p90 ms", "p99 ms", "vs ref", "peak RSS MB"]


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 2**20:.2f} MiB"


def table_rows(result: BenchResult) -> list[list[str]]:
    rows = []
    for r in result.rows():
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        if r["ratio"] is not None and r["ratio_of"] == "mean":
            ratio += " (mean)"
        rows.append([
            r["model"], f"{r['input_shape']} {r['input_dtype']}", _size(r["size_bytes"]),
            f"{r['ops_int8']}/{r['ops_float']}", str(r["threads"]), _ms(r["init_ms"]),
            _ms(r["min_ms"]), _ms(r["mean_ms"]), _ms(r["median_ms"]), _ms(r["p90_ms"]), _ms(r["p99_ms"]), ratio,
            "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.1f}",
        ])
    return rows


def pipe_table(header: list[str], body: list[list[str]], numeric: set[int]) -> str:
    """A Markdown pipe table, padded so it also reads aligned in a terminal; the `numeric`
    columns are right-aligned."""
    rows = [header] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), sep] + [line(r) for r in rows[1:]])


def format_table(result: BenchResult) -> str:
    """The bench table (`pipe_table`), then the notes."""
    table = pipe_table(TABLE_HEADER, table_rows(result), set(range(4, len(TABLE_HEADER))))
    return "\n".join([table, ""] + result.notes)


def write_csv(result: BenchResult, path: str | os.PathLike) -> None:
    """The table rows with every figure unrounded, written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for r in result.rows():
                w.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS})
