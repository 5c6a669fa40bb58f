"""The accuracy/parity report over every exported variant, and the export CLI end to end."""
from __future__ import annotations

import json

import pytest

import mobile_seg  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from export_helpers import tiny_data, tiny_export, tiny_run
from train_helpers import cli, error_lines


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "export_session"


@pytest.fixture(scope="module")
def report(shared_data, root):
    from converters.report import report_export, write_report
    result = tiny_export(shared_data, root)
    rep = report_export(result, tiny_data(shared_data, root), latency_runs=3, progress=False)
    write_report(rep, result.out_dir)
    return rep


def test_report_has_a_row_per_variant_with_every_column(report, shared_data, root):
    rows = {r["variant"]: r for r in report["rows"]}
    exported = {f.variant: f.size_bytes for f in tiny_export(shared_data, root).files}
    assert list(rows) == ["keras-float", "keras-qat", "fp32", "fp16", "dynamic", "int8", "qat-int8"]
    for variant in ("fp32", "fp16", "dynamic", "int8", "qat-int8"):
        r = rows[variant]
        assert r["images"] == 3 and r["size_bytes"] == exported[variant]   # (before metrics were embedded)
        assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["person_iou"] <= 1.0 and 0.0 <= r["pixel_mismatch"] <= 1.0
        assert r["drop_pt"] == round(100 * (rows["keras-float"]["miou"] - r["miou"]), 3)
        assert r["latency_ms"] > 0 and abs(r["latency_ratio_fp32"] - r["latency_ms"] / rows["fp32"]["latency_ms"]) < 0.01
        assert "flag" not in r
    ratio = {v: rows[v]["size_ratio_fp32"] for v in ("fp32", "fp16", "dynamic", "int8", "qat-int8")}
    assert ratio["fp32"] == 1.0 and 0.45 < ratio["fp16"] < 0.6
    assert all(ratio[v] < 0.4 for v in ("dynamic", "int8", "qat-int8")), ratio   # int8 weights
    assert rows["fp32"]["census"]["int8"] == 0
    for variant in ("int8", "qat-int8"):
        assert rows[variant]["census"]["float"] == 0 < rows[variant]["census"]["int8"], rows[variant]["census"]
    # a random tiny net: logits of a few units, classes near ties (the trained model: 3.8e-5, 0 flips)
    assert rows["fp32"]["max_abs_diff"] < 3e-4 and rows["fp32"]["pixel_mismatch"] < 1e-3
    assert abs(rows["fp32"]["drop_pt"]) < 0.05
    # the conversion is faithful to the QAT graph: closer to its own Keras model than to the float one
    assert rows["qat-int8"]["max_abs_diff_vs_qat_keras"] < rows["qat-int8"]["max_abs_diff"]
    assert report["latency"]["threads"] == 1 and report["latency"]["interleaved"]
    assert report["flags"] == []


def test_report_files_and_embedded_metrics(report, shared_data, root):
    from converters.metadata import read_metadata
    from mobile_seg.tflite_model import TFLiteModel
    out = tiny_export(shared_data, root).out_dir
    saved = json.loads((out / "report.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 2 + len(report["rows"]) - 1 and "| qat-int8 |" in md
    rows = {r["variant"]: r for r in report["rows"]}
    for variant in ("fp32", "int8", "qat-int8"):
        meta = read_metadata((out / f"{variant}.tflite").read_bytes())
        assert list(meta["metrics"]) == ["voc/val"]  # '<dataset>/<split>': the built dataset's name
        figures = meta["metrics"]["voc/val"]
        assert figures["miou"] == rows[variant]["miou"] and figures["person_iou"] == rows[variant]["person_iou"]
        assert figures["images"] == 3
        assert meta["variant"] == variant  # the rest of the metadata survived the rewrite
        assert TFLiteModel(out / f"{variant}.tflite").metrics["voc/val"]["miou"] == rows[variant]["miou"]


def test_an_int8_file_with_float_convs_is_flagged(shared_data, root):
    from converters.export import ExportedFile
    from converters.report import build_report, format_markdown
    result = tiny_export(shared_data, root)
    fp32 = next(f for f in result.files if f.variant == "fp32")
    fake = ExportedFile("int8", fp32.path, fp32.size_bytes, 0.0, "float", fp32.census)
    rep = build_report([fake], tiny_data(shared_data, root), latency_runs=1, progress=False)
    assert rep["flags"] and "float convolution" in rep["flags"][0]
    assert "**" in format_markdown(rep)


def test_export_cli_with_report_json(shared_data, root, tmp_path):
    data, run = tiny_data(shared_data, root), tiny_run(root)
    out = tmp_path / "cli_export"
    proc = cli("export", "--run", run, "--out", out, "--variant", "fp32", "--data", data,
               "--latency-runs", "2", "--quiet", "--json", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["variant"] for r in report["rows"]] == ["keras-float", "fp32"]
    assert report["rows"][1]["max_abs_diff"] < 3e-4
    assert (out / "fp32.tflite").is_file() and (out / "report.md").is_file()
    assert "| fp32 |" in proc.stdout


def test_cli_errors_are_one_line(shared_data, root, tmp_path):
    proc = cli("export", "--run", tiny_run(root), "--out", tmp_path / "o", "--variant", "int8")
    assert proc.returncode == 2 and error_lines(proc.stderr) and "needs --data" in error_lines(proc.stderr)[0]
    proc = cli("qat", "--run", tmp_path / "nope", "--data", tiny_data(shared_data, root), "--out", tmp_path / "q")
    assert proc.returncode == 2 and "run directory not found" in error_lines(proc.stderr)[0]
    assert not (tmp_path / "o").exists()
