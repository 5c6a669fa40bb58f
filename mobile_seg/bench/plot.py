"""`bench --plot`: latency vs accuracy with the Pareto front, or latency bars.

Accuracy comes from the models' own metadata, in the one metrics schema of
`mobile_seg.spec` (written by the export report and `converters.metadata.restamp`):

    "metrics": {"portraits/val": {"person_iou": 0.912, "miou": 0.934}, ...}

keys are `<dataset>/<split>`, values fractions in [0, 1]. Models without it (MediaPipe's)
are drawn as labelled vertical lines at their latency, so the baseline stays in view.
`check_metric` validates `--metric` against the files before any timing starts.
"""
from __future__ import annotations

import os
from pathlib import Path

from mobile_seg.bench.results import BenchResult, ModelResult
from mobile_seg.bench.stats import pareto_front
from mobile_seg.errors import ConfigError
from mobile_seg.io_utils import atomic_path
from mobile_seg.spec import METRIC_NAMES, SpecError, metric_value, parse_metric

PREFERRED_METRICS = ("person_iou", "miou")


def accuracy_of(model: ModelResult, key: tuple[str, str]) -> float | None:
    return metric_value(model.info.metrics, *key)


def _parse(metric: str) -> tuple[str, str]:
    try:
        return parse_metric(metric)
    except SpecError as e:
        raise ConfigError(f"--metric: {e}") from None


def check_metric(metric: str, files, plot_path=None) -> tuple[str, str]:
    """Validate `--metric` before a bench: well formed, with --plot, and carried by at least
    one of the .tflite `files` (read from their metadata; nothing is run)."""
    from mobile_seg.model_metadata import is_tflite, read_record, record_metrics
    key = _parse(metric)
    if plot_path is None:
        raise ConfigError("--metric applies to --plot only")
    carried = set()
    for f in files:
        try:
            content = open(f, "rb").read()
            metrics = record_metrics(read_record(content)) if is_tflite(content) else {}
        except (OSError, ValueError):
            continue  # the bench itself reports unreadable files
        carried |= {f"{k}:{n}" for k, v in metrics.items() for n in v
                    if n in METRIC_NAMES and metric_value(metrics, k, n) is not None}
    if f"{key[0]}:{key[1]}" not in carried:
        have = ", ".join(sorted(carried)[:6]) or "none"
        raise ConfigError(f"--metric {metric}: no model carries it in its metadata (they carry: {have})")
    return key


def choose_metric(result: BenchResult, metric: str | None = None) -> tuple[str, str] | None:
    """The (dataset/split, metric) to plot: `metric` given as 'DATASET/SPLIT:NAME', else the
    preferred metric (person_iou, then miou) on the split most models report."""
    if metric:
        key = _parse(metric)
        if not any(accuracy_of(m, key) is not None for m in result.models):
            raise ConfigError(f"--metric {metric}: no model carries it in its metadata")
        return key
    for name in PREFERRED_METRICS:
        counts: dict[str, int] = {}
        for m in result.models:
            for split, values in (m.info.metrics or {}).items():
                if isinstance(values, dict) and isinstance(values.get(name), (int, float)):
                    counts[split] = counts.get(split, 0) + 1
        if counts:
            return max(counts, key=counts.get), name  # first-seen split wins ties
    return None


def _latency(m) -> float:
    return m.latency.median_ms if m.latency.median_ms is not None else m.latency.mean_ms


def plot_bench(result: BenchResult, path: str | os.PathLike, metric: str | None = None) -> dict:
    """Draw the plot to `path` (format from its extension), atomically; return what was drawn:
    {"kind": "pareto"|"bars", "metric", "threads", "front": [names on the Pareto front]}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    longest = max((len(mr.info.name) for mr in result.models), default=10)
    fig, ax = plt.subplots(figsize=(6 + 0.07 * longest, 2 + 0.45 * len(result.models) * len(result.threads)),
                           dpi=120)
    if fmt not in fig.canvas.get_supported_filetypes():
        plt.close(fig)
        raise ConfigError(f"--plot: unsupported image format .{fmt} (use .png, .svg or .pdf)", path)
    where = "this machine" if result.target == "host" else f"{result.environment.get('model') or 'phone'}"
    key = choose_metric(result, metric)
    threads = result.threads[0]
    try:
        if key is not None:
            summary = _pareto(ax, result, key, threads, where)
        else:
            summary = _bars(ax, result, where)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return summary


def _pareto(ax, result: BenchResult, key, threads: int, where: str) -> dict:
    scored, unscored = [], []
    for mr in result.models:
        m = mr.at(threads)
        if m is None:
            continue
        acc = accuracy_of(mr, key)
        (scored if acc is not None else unscored).append((mr.info.name, _latency(m), acc))
    points = [(lat, acc) for _, lat, acc in scored]
    front = pareto_front(points)
    for i, (name, lat, acc) in enumerate(scored):
        on = i in front
        ax.scatter([lat], [acc], s=60 if on else 40, color="tab:red" if on else "tab:gray", zorder=3)
        ax.annotate(name, (lat, acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if front:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red",
                linewidth=1.2, drawstyle="steps-post", label="Pareto front", zorder=2)
    for name, lat, _ in unscored:
        ax.axvline(lat, color="tab:blue", linestyle=":", linewidth=1)
        ax.annotate(f"{name} (no accuracy)", (lat, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -12), textcoords="offset points", rotation=90, fontsize=7, va="top",
                    color="tab:blue")
    split, name = key
    ax.set_xlabel(f"median latency (ms), {threads} thread(s)")
    ax.set_ylabel(f"{name} on {split}")
    ax.set_title(f"latency vs accuracy on {where}")
    ax.grid(True, alpha=0.3)
    if front:
        ax.legend(loc="lower right", fontsize=8)
    return {"kind": "pareto", "metric": f"{split}:{name}", "threads": threads,
            "front": [scored[i][0] for i in front]}


def _bars(ax, result: BenchResult, where: str) -> dict:
    import numpy as np

    names = [mr.info.name for mr in result.models]
    threads = result.threads
    height = 0.8 / len(threads)
    y = np.arange(len(names))
    for k, t in enumerate(threads):
        lat, err = [], []
        for mr in result.models:
            m = mr.at(t)
            v = _latency(m) if m else 0.0
            lat.append(v)
            err.append(max(0.0, (m.latency.p90_ms or v) - v) if m else 0.0)
        ax.barh(y + k * height, lat, height=height, xerr=[np.zeros(len(err)), err], capsize=2,
                label=f"{t} thread(s)")
    ax.set_yticks(y + height * (len(threads) - 1) / 2, names, fontsize=8)
    ax.invert_yaxis()
    basis = "median" if all(m.latency.median_ms is not None for mr in result.models
                            for m in mr.measurements) else "median (mean where unavailable)"
    ax.set_xlabel(f"{basis} latency (ms); whisker to p90")
    ax.set_title(f"latency per model on {where}")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return {"kind": "bars", "metric": None, "threads": threads, "front": []}
