"""The models shipped inside the package (mobile_seg/assets/models) and their measured figures.

`models.json` beside the .tflite files lists each shipped model with what was measured on
it (dataset-level and mean per-image person IoU per val split next to its baseline's —
MediaPipe selfie or its landscape model — and latency, all from one `mobile-seg compare`
run: `recipes/write_manifest.py`) and the commands that measured it. The .tflite
files carry their own metadata (labels, input size, normalisation, model config).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mobile_seg.errors import ModelFileError

MODELS_DIR = Path(__file__).resolve().parent / "assets" / "models"
MANIFEST_NAME = "models.json"
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class ShippedModel:
    """One entry of models.json, with the facts read from its .tflite file."""

    name: str
    path: Path
    description: str
    size_bytes: int
    input_size: tuple[int, int]
    output_kind: str
    person_iou: dict[str, float] = field(default_factory=dict)
    baseline_person_iou: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    mean_image_iou: dict[str, float] = field(default_factory=dict)
    baseline_mean_image_iou: dict[str, float] = field(default_factory=dict)
    baseline: str = ""
    extra: dict = field(default_factory=dict)

    def iou_table(self) -> tuple[str, dict[str, float], dict[str, float]]:
        """(measure, ours, baseline's) per split: mean per-image IoU where models.json has
        it (what compare's paired test is about), else dataset-level person IoU."""
        if self.mean_image_iou:
            return "mean per-image", self.mean_image_iou, self.baseline_mean_image_iou
        return "dataset-level", self.person_iou, self.baseline_person_iou

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "description": self.description,
                "size_bytes": self.size_bytes, "input_size": list(self.input_size),
                "output_kind": self.output_kind, "person_iou": self.person_iou,
                "baseline_person_iou": self.baseline_person_iou, "latency_ms": self.latency_ms,
                "mean_image_iou": self.mean_image_iou, "baseline_mean_image_iou": self.baseline_mean_image_iou,
                "baseline": self.baseline, **self.extra}


def read_manifest(models_dir: str | os.PathLike | None = None) -> list[dict]:
    """The raw models.json entries ([] when the package ships no models)."""
    path = Path(models_dir or MODELS_DIR) / MANIFEST_NAME
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())["models"]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"not a valid model list ({e})", path) from None
    return list(entries)


def shipped_models(models_dir: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every model in models.json, each checked to load with LiteRT."""
    from mobile_seg.tflite_model import TFLiteModel
    models_dir = Path(models_dir or MODELS_DIR)
    out = []
    figures = ("person_iou", "baseline_person_iou", "latency_ms", "mean_image_iou", "baseline_mean_image_iou")
    known = {"name", "file", "description", "baseline", *figures}
    for entry in read_manifest(models_dir):
        path = models_dir / entry["file"]
        tfl = TFLiteModel(path, num_threads=1)
        out.append(ShippedModel(
            name=entry["name"], path=path, description=entry.get("description", ""),
            size_bytes=tfl.size_bytes, input_size=tuple(tfl.input_size), output_kind=tfl.output_kind,
            **{k: dict(entry.get(k) or {}) for k in figures}, baseline=entry.get("baseline", ""),
            extra={k: v for k, v in entry.items() if k not in known}))
    return out


def model_path(name: str = DEFAULT_NAME, models_dir: str | os.PathLike | None = None) -> Path | None:
    """The .tflite file of shipped model `name`, or None when it is not shipped."""
    models_dir = Path(models_dir or MODELS_DIR)
    for entry in read_manifest(models_dir):
        if entry.get("name") == name:
            path = models_dir / entry["file"]
            return path if path.is_file() else None
    return None


def format_models(models: list[ShippedModel]) -> str:
    """A table: name, input, size, person IoU per split (the model's baseline in brackets),
    latency; then what the figures are and which baseline each row was measured against."""
    if not models:
        return "no models shipped in this install"
    tables = [m.iou_table() for m in models]
    splits = sorted({s for _, ours, _ in tables for s in ours})
    head = ["model", "input", "size"] + [f"IoU {s}" for s in splits] + ["1-thread ms"]
    rows = []
    for m, (_, ours, theirs) in zip(models, tables):
        ious = []
        for s in splits:
            v, b = ours.get(s), theirs.get(s)
            ious.append("-" if v is None else f"{v:.3f}" + ("" if b is None else f" ({b:.3f})"))
        lat = m.latency_ms.get("median_1_thread")
        base = m.latency_ms.get("baseline_median_1_thread")
        lat_s = "-" if lat is None else f"{lat:.2f}" + ("" if base is None else f" ({base:.2f})")
        rows.append([m.name, "x".join(map(str, m.input_size)), f"{m.size_bytes / 1e6:.2f} MB"] + ious + [lat_s])
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    measures = {measure for measure, _, _ in tables}
    mixed = len(measures) > 1
    what = "person IoU as noted per model" if mixed else f"{next(iter(measures))} person IoU"
    lines.append(f"IoU: {what}; in brackets: the model's baseline (named below), measured in the same "
                 "compare run (same eval, interleaved bench)")
    for m, (measure, _, _) in zip(models, tables):
        notes = [f"{measure} IoU"] if mixed else []
        if m.baseline:
            notes.append(f"baseline {m.baseline}")
        lines.append(f"{m.name}: {m.path}" + (f" ({'; '.join(notes)})" if notes else ""))
        if m.description:
            lines.append(f"  {m.description}")
    return "\n".join(lines)


def manifest_entry(name: str, file: str, description: str, compare: dict, model: str, baseline: str,
                   **extra) -> dict:
    """A models.json entry from one `mobile-seg compare --json` result that measured both
    `model` and `baseline` (names as compare printed them): person IoU (dataset-level) and
    mean per-image IoU per split, the paired difference with its CI, and latency."""
    def pick(key, who):
        return {split: round(float(v["models"][who][key]), 4) for split, v in compare["splits"].items()
                if who in v["models"] and v["models"][who].get(key) is not None}

    diffs = {split: v["models"][model]["paired_diff"] for split, v in compare["splits"].items()
             if model in v["models"] and "paired_diff" in v["models"][model]
             and compare["models"][0]["name"] == baseline}
    lat = compare.get("latency", {})
    latency = {"median_1_thread": lat.get(model, {}).get("median_ms"),
               "baseline_median_1_thread": lat.get(baseline, {}).get("median_ms")}
    if latency["median_1_thread"] and latency["baseline_median_1_thread"]:
        latency["ratio"] = round(latency["median_1_thread"] / latency["baseline_median_1_thread"], 3)
    return {"name": name, "file": file, "description": description,
            "person_iou": pick("person_iou", model), "mean_image_iou": pick("mean_image_iou", model),
            "baseline": baseline, "baseline_person_iou": pick("person_iou", baseline),
            "baseline_mean_image_iou": pick("mean_image_iou", baseline),
            "paired_diff_vs_baseline": diffs, "latency_ms": latency,
            "bench_environment": compare.get("bench_environment", {}), **extra}


