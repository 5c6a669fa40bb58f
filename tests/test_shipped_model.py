"""The model shipped in the package: listed by `mobile-seg models`, within its limits, as
accurate as models.json says (re-measured here), and the demo's default."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_seg.cli import main
from mobile_seg.shipped import MODELS_DIR, model_path, read_manifest, shipped_models
from train_helpers import build, voc_subset

MAX_BYTES = 3_000_000


@pytest.fixture(scope="module")
def default_entry():
    entries = {e["name"]: e for e in read_manifest()}
    assert "default" in entries, f"no default model listed in {MODELS_DIR}/models.json"
    return entries["default"]


def test_models_command_lists_the_default(default_entry):
    res = CliRunner().invoke(main, ["models", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.output.strip().splitlines()[-1])["models"]
    default = next(m for m in listed if m["name"] == "default")
    assert default["size_bytes"] <= MAX_BYTES
    assert default["output_kind"] == "logits" and default["input_size"] == [224, 224]
    assert "portraits/val" in res.output and "default" in res.output.splitlines()[2]


def test_default_is_int8_with_metadata_and_its_recorded_figures(default_entry):
    from mobile_seg.tflite_model import TFLiteModel
    model = TFLiteModel(model_path("default"), num_threads=1)
    census = model.op_census()
    assert census.float_convs == 0 and census.int8 > 50
    meta = model.metadata
    assert meta["labels"] == ["background", "person"]
    assert (meta["input"]["height"], meta["input"]["width"]) == model.input_size
    # recorded by the recipe (MODEL_CARD.md): ahead of MediaPipe on coco_person, 1.5 pt
    # behind on portraits, at most 2x its latency
    iou, base = default_entry["person_iou"], default_entry["baseline_person_iou"]
    assert iou["coco_person/val"] >= base["coco_person/val"]
    assert iou["portraits/val"] >= 0.85
    assert default_entry["latency_ms"]["ratio"] <= 2.0


def test_default_portraits_iou_reproduces(shared_data, default_entry, tmp_path):
    """Re-run `eval --tflite` on portraits val: the figures in models.json, ours and MediaPipe's."""
    from mobile_seg.evaluate import evaluate
    built = build(voc_subset(shared_data / "portraits", tmp_path / "voc", {"val": 44}), tmp_path / "built")
    ours = evaluate(built, "val", tflite=model_path("default"), progress=False, num_threads=1).to_dict()
    base = evaluate(built, "val", tflite=shared_data / "models/selfie_segmentation.tflite",
                    progress=False, num_threads=1).to_dict()
    iou = ours["per_class_iou"]["person"]
    assert iou == pytest.approx(default_entry["person_iou"]["portraits/val"], abs=1e-3)
    assert base["per_class_iou"]["person"] == pytest.approx(
        default_entry["baseline_person_iou"]["portraits/val"], abs=1e-3)


def test_demo_runs_with_the_shipped_model_by_default(shared_data, tmp_path):
    out = tmp_path / "out.mp4"
    res = CliRunner().invoke(main, ["demo", "--video", str(shared_data / "videos/asl_again.mkv"),
                                    "--no-window", "--output", str(out), "--max-frames", "12", "--stats",
                                    "--json"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    stats = json.loads(res.output.strip().splitlines()[-1])
    assert stats["model"].endswith("default.tflite")
    assert stats["frames"] == 12


def test_every_listed_model_loads():
    models = shipped_models()
    assert models and all(m.size_bytes <= MAX_BYTES for m in models)
    assert all(np.all(np.array(m.input_size) > 0) for m in models)


def test_manifest_entry_from_a_compare_run(tmp_path):
    """recipes/write_manifest.py's core: per-split figures and the latency ratio of one
    `compare --json` result, ours against the baseline."""
    import shutil
    from mobile_seg.shipped import format_models, manifest_entry
    fig = lambda iou, mean, diff=None: {"person_iou": iou, "mean_image_iou": mean,  # noqa: E731
                                        **({"paired_diff": diff} if diff else {})}
    diff = {"mean": 0.02, "ci95": [0.01, 0.03], "images": 44}
    compare = {"models": [{"name": "mp.tflite"}, {"name": "ours.tflite"}],
               "splits": {"portraits/val": {"models": {"mp.tflite": fig(0.9, 0.88),
                                                       "ours.tflite": fig(0.91234, 0.9, diff)}},
                          "coco/val": {"models": {"mp.tflite": fig(0.4, 0.3), "ours.tflite": fig(0.5, 0.45)}}},
               "latency": {"mp.tflite": {"median_ms": 2.0}, "ours.tflite": {"median_ms": 3.0}},
               "bench_environment": {"load_avg_before": [0.5, 0.5, 0.5]}}
    entry = manifest_entry("ours", "ours.tflite", "test model", compare, "ours.tflite", "mp.tflite",
                           recipe="r.sh")
    assert entry["person_iou"] == {"portraits/val": 0.9123, "coco/val": 0.5}
    assert entry["mean_image_iou"]["coco/val"] == 0.45 and entry["baseline_mean_image_iou"]["portraits/val"] == 0.88
    assert entry["baseline_person_iou"]["coco/val"] == 0.4
    assert entry["paired_diff_vs_baseline"] == {"portraits/val": diff}
    assert entry["latency_ms"] == {"median_1_thread": 3.0, "baseline_median_1_thread": 2.0, "ratio": 1.5}
    assert entry["recipe"] == "r.sh"
    # a models dir of our own: the table shows ours and, in brackets, the baseline, by the
    # mean per-image IoU that compare's paired test is about, and names the baseline
    shutil.copy(model_path("default"), tmp_path / "ours.tflite")
    (tmp_path / "models.json").write_text(json.dumps({"models": [entry]}))
    table = format_models(shipped_models(tmp_path))
    assert "0.900 (0.880)" in table and "0.450 (0.300)" in table and "3.00 (2.00)" in table
    assert "IoU: mean per-image person IoU" in table and "(baseline mp.tflite)" in table
    # an older entry without per-image figures falls back to dataset-level, and says so
    old = {k: v for k, v in entry.items() if "mean_image" not in k}
    (tmp_path / "models.json").write_text(json.dumps({"models": [{**entry, "name": "new"}, {**old, "name": "old"}]}))
    table = format_models(shipped_models(tmp_path))
    assert "0.912 (0.900)" in table and "0.500 (0.400)" in table and "0.450 (0.300)" in table
    assert "IoU: person IoU as noted per model" in table
    assert "(mean per-image IoU; baseline mp.tflite)" in table and "(dataset-level IoU; baseline mp.tflite)" in table
