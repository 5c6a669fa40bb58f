"""Standard TFLite metadata written once, read once: round trips, foreign files, restamping,
the `metadata` CLI and `bench --metric` checked before any timing."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from converters.metadata import embed_metadata, restamp
from mobile_seg.cli import main
from mobile_seg.model_metadata import packed_files, read_record, read_standard


def test_foreign_file_keeps_its_meaning_when_restamped(shared_data, tmp_path):
    selfie = tmp_path / "selfie.tflite"
    shutil.copy(shared_data / "models/selfie_segmentation.tflite", selfie)
    before = read_standard(selfie.read_bytes())
    assert (before.input_mean, before.input_std, before.activation) == ([0.0], [255.0], "none")
    record = restamp(selfie, metrics={"portraits/val": {"person_iou": 0.869}})
    assert record["input"]["mean"] == [0.0] * 3 and record["input"]["std"] == [255.0] * 3
    assert record["output"]["kind"] == "person-probability"
    content = selfie.read_bytes()
    after = read_standard(content)
    assert after.input_mean == [0.0] * 3 and after.input_std == [255.0] * 3 and after.activation == "none"
    assert after.input_min == [0.0] * 3 and after.input_max == [1.0] * 3
    assert read_record(content)["metrics"] == {"portraits/val": {"person_iou": 0.869}}
    restamp(selfie, metrics={"portraits/val": {"miou": 0.9}, "coco_person/val": {"person_iou": 0.5}})
    again = selfie.read_bytes()
    assert read_record(again)["metrics"] == {"portraits/val": {"person_iou": 0.869, "miou": 0.9},
                                             "coco_person/val": {"person_iou": 0.5}}
    assert packed_files(again) == {"labels.txt": b"background\nperson"}
    assert abs(len(again) - len(content)) < 200  # the old zip and entries were replaced, not appended


def test_embedding_twice_is_stable_and_bad_metrics_write_nothing(shared_data, tmp_path):
    blob = (shared_data / "models/selfie_segmentation.tflite").read_bytes()
    meta = {"name": "m", "labels": ["background", "person"], "output": {"kind": "person-probability"},
            "input": {"mean": [0.0] * 3, "std": [255.0] * 3}}
    once = embed_metadata(blob, meta)
    assert embed_metadata(once, meta) == once
    with pytest.raises(ValueError, match="'<dataset>/<split>'"):
        embed_metadata(blob, {**meta, "metrics": {"miou": 0.9}})
    path = tmp_path / "m.tflite"
    path.write_bytes(once)
    res = CliRunner().invoke(main, ["metadata", "stamp", str(path), "--metrics", '{"val": {"miou": 1}}'])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "error:" in res.output
    assert path.read_bytes() == once and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_metadata_cli_show_and_stamp(shared_data, tmp_path):
    path = tmp_path / "s.tflite"
    shutil.copy(shared_data / "models/selfie_segmentation.tflite", path)
    res = CliRunner().invoke(main, ["metadata", "stamp", str(path), "--metrics",
                                    '{"portraits/val": {"person_iou": 0.869}}', "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["metrics"]["portraits/val"]["person_iou"] == 0.869
    res = CliRunner().invoke(main, ["metadata", "show", str(path), "--json"])
    assert res.exit_code == 0 and "portraits/val: person_iou 0.8690" in res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["spec"]["input"]["std"] == [255.0] * 3 and info["standard"]["labels"] == ["background", "person"]
    res = CliRunner().invoke(main, ["metadata", "show", str(tmp_path / "nope.tflite")])
    assert res.exit_code == 2 and res.output.strip().endswith("nope.tflite: file not found")


@pytest.mark.parametrize("metric,why", [("portraits:miou", "DATASET/SPLIT"), ("portraits/val:speed", "unknown metric"),
                                        ("coco/val:miou", "no model carries it")])
def test_bench_metric_is_checked_before_the_bench(shared_data, tmp_path, metric, why):
    path = tmp_path / "s.tflite"
    shutil.copy(shared_data / "models/selfie_segmentation.tflite", path)
    restamp(path, metrics={"portraits/val": {"miou": 0.9}})
    res = CliRunner().invoke(main, ["bench", str(path), "--runs", "100000", "--no-memory",
                                    "--plot", str(tmp_path / "p.png"), "--metric", metric])
    assert res.exit_code == 2 and why in res.output and "median" not in res.output  # no timing ran
    assert not (tmp_path / "p.png").exists()
