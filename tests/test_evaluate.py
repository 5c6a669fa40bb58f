"""`mobile-seg eval`: one pass at original resolution, Keras runs and .tflite files alike."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_seg.cli import main
from mobile_seg.config import ModelConfig, TrainConfig
from train_helpers import TINY_MODEL, build, voc_subset, with_empty_split


@pytest.fixture(scope="module")
def portraits_val(shared_data, tmp_path_factory):
    """All 44 shared portraits val images, built."""
    tmp = tmp_path_factory.mktemp("pval")
    return build(voc_subset(shared_data / "portraits", tmp / "voc", {"val": 44}), tmp / "built")


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
    """A tiny model trained 3 steps on 4 portraits; its dataset has train (4) and val (3)."""
    from mobile_seg.training import train
    tmp = tmp_path_factory.mktemp("tinyrun")
    built = build(voc_subset(shared_data / "portraits", tmp / "voc", {"train": 4, "val": 3}), tmp / "built")
    cfg = ModelConfig(**TINY_MODEL)
    result = train(built, tmp / "run", cfg, TrainConfig(steps=3, batch_size=2, warmup_steps=0), progress=False)
    return built, tmp / "run", result.model, cfg


def _eval(*args):
    result = CliRunner().invoke(main, ["eval", "--quiet", *map(str, args)])
    return result


def test_mediapipe_selfie_on_portraits_val(portraits_val, shared_data):
    """Sanity check of the whole path: MediaPipe's square selfie model, stretch-resized input,
    probabilities upsampled to each image's size: person IoU 0.869 over the 44 val images."""
    result = _eval("--data", portraits_val, "--tflite", shared_data / "models" / "selfie_segmentation.tflite",
                   "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout.strip().splitlines()[-1])
    assert d["num_examples"] == 44 and d["class_names"] == ["background", "person"]
    assert d["per_class_iou"]["person"] == pytest.approx(0.869, abs=0.01)
    assert d["pixel_accuracy"] > 0.95
    assert "IoU person" in result.stdout and "confusion matrix" in result.stdout


def test_run_eval_counts_every_original_pixel(tiny_run):
    from mobile_seg.data.pipeline import iterate_examples
    built, run, _, _ = tiny_run
    result = _eval("--data", built, "--split", "val", "--run", run, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout.strip().splitlines()[-1])
    pixels = sum(mask.size for _, _, mask in iterate_examples(built, "val"))
    assert d["num_examples"] == 3 and d["pixels"] == pixels == np.sum(d["confusion_matrix"])
    assert set(d) >= {"miou", "per_class_iou", "pixel_accuracy", "confusion_matrix", "source"}
    assert "(step 3)" in d["source"]


@pytest.mark.slow  # ~30 s of TFLite conversion; each path alone is covered by the tests above
def test_keras_and_tflite_paths_agree(tiny_run, tmp_path):
    """The same network as a checkpoint and as a float .tflite scores the same: one metric path."""
    import tensorflow as tf
    from converters.metadata import embed_metadata
    built, run, model, cfg = tiny_run
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    meta = {"name": "tiny", "labels": ["background", "person"],
            "input": {"height": 64, "width": 64, "color": "RGB", "mean": [127.5] * 3, "std": [127.5] * 3,
                      "resize": "stretch"},
            "output": {"kind": "logits", "person_index": 1}, "variant": "fp32", "model_config": cfg.to_dict()}
    (tmp_path / "tiny.tflite").write_bytes(embed_metadata(tflite, meta))
    from mobile_seg.evaluate import evaluate
    a = evaluate(built, "val", run=run, progress=False)
    b = evaluate(built, "val", tflite=tmp_path / "tiny.tflite", progress=False)
    assert a.confusion.total == b.confusion.total
    disagreement = np.abs(a.confusion.matrix - b.confusion.matrix).sum() / a.confusion.total
    assert disagreement < 0.002


@pytest.mark.parametrize("rule", ["pad", "letterbox", "crop"])
def test_letterbox_and_crop_resize_rules(tiny_run, rule):
    """The spec's fit rules through eval ('pad' is the old name of letterbox)."""
    built, run, _, _ = tiny_run
    result = _eval("--data", built, "--run", run, "--resize", rule, "--limit", "1")
    shown = "letterbox" if rule == "pad" else rule
    assert result.exit_code == 0 and f"resize={shown}" in result.stdout and ": 1 images" in result.stdout


@pytest.mark.parametrize("case", ["both", "neither", "empty", "no_run", "no_checkpoint", "bad_checkpoint"])
def test_errors_are_one_line(tiny_run, tmp_path, shared_data, case):
    built, run, _, _ = tiny_run
    tflite = shared_data / "models" / "selfie_segmentation.tflite"
    args, expected = {
        "both": (["--run", run, "--tflite", tflite], "give exactly one of --run RUN_DIR or --tflite FILE"),
        "neither": ([], "give exactly one of --run RUN_DIR or --tflite FILE"),
        "empty": (["--run", run, "--split", "empty"], "split 'empty' is empty: nothing to evaluate"),
        "no_run": (["--run", tmp_path / "nope"], "run directory not found"),
        "no_checkpoint": (["--run", tmp_path / "fresh"], "no checkpoint in"),
        "bad_checkpoint": (["--run", tmp_path / "edited"], "checkpoint does not fit the model of config.json"),
    }[case]
    data = built
    if case == "empty":
        data = with_empty_split(built, tmp_path / "with_empty")
    if case == "no_checkpoint":
        ModelConfig(**TINY_MODEL).save(tmp_path / "fresh" / "config.json")
    if case == "bad_checkpoint":  # someone edited config.json after training
        import shutil
        shutil.copytree(run, tmp_path / "edited")
        ModelConfig(alpha=0.5, input_size=(64, 64)).save(tmp_path / "edited" / "config.json")
    result = _eval("--data", data, *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.stderr
