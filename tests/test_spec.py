"""mobile_seg.spec: normalise / fit / map back, output kinds, the metrics schema."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_seg import spec as S
from mobile_seg.config import ModelConfig


def test_normalise_is_the_config_rule_and_round_trips():
    inp = S.InputSpec.from_config(ModelConfig(input_size=(64, 96)))
    assert inp.size == (64, 96) and inp.mean == (127.5,) * 3 and inp.std == (127.5,) * 3
    px = np.array([[[0, 127, 255]]], np.uint8)
    np.testing.assert_allclose(inp.normalise(px), [[[-1.0, -0.003921569, 1.0]]], atol=1e-6)
    assert inp.value_range == ([-1.0] * 3, [1.0] * 3)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(inp.denormalise(inp.normalise(img)), img)
    mp = S.foreign_input(256, 256)
    assert mp.normalise(np.full((1, 1, 3), 255, np.uint8)).max() == 1.0 and mp.value_range[0] == [0.0] * 3


def test_fit_rules_place_the_image_and_map_back_inverts_them():
    inp = S.InputSpec(64, 64)
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, :80] = 255  # left half white
    for rule, scaled, offset in (("stretch", (64, 64), (0, 0)), ("letterbox", (36, 64), (14, 0)),
                                 ("crop", (64, 114), (0, -25))):
        fit = inp.plan_fit(frame.shape[:2], rule)
        assert (fit.scaled_hw, fit.offset) == (scaled, offset), rule
        x = inp.fit(frame, fit)
        assert x.shape == (64, 64, 3) and x.dtype == np.uint8
        back = inp.map_back(x[..., 0].astype(np.float32) / 255.0, fit)
        assert back.shape == (90, 160)
        assert back[:, :70].min() > 0.95 and back[:, 90:].max() < 0.05, rule
    lb = inp.fit(frame, inp.plan_fit(frame.shape[:2], "letterbox"))
    assert np.all(lb[:14] == 128) and np.all(lb[50:] == 128)  # the mean pixel: 0 after normalising
    assert S.resize_rule("pad") == "letterbox"
    with pytest.raises(S.SpecError, match="unknown resize rule"):
        inp.plan_fit((10, 10), "squash")


def test_output_kinds_agree_on_the_person_probability():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (8, 8, 2)).astype(np.float32)
    probs = S.softmax(logits)
    p = probs[..., 1]
    labels = ("background", "person")
    np.testing.assert_allclose(S.OutputSpec("logits", labels).person_probability(logits), p, atol=1e-6)
    np.testing.assert_allclose(S.OutputSpec("probabilities", labels).person_probability(probs), p, atol=1e-6)
    np.testing.assert_allclose(S.OutputSpec("person-probability", labels).person_probability(p[..., None]), p)
    cat = S.OutputSpec("category", labels, dtype="uint8")
    np.testing.assert_array_equal(cat.person_probability(logits.argmax(-1).astype(np.uint8)), (p > 0.5))
    np.testing.assert_allclose(S.OutputSpec("logits", labels).class_probabilities(logits), probs, atol=1e-6)
    three = rng.normal(0, 2, (4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(S.OutputSpec("logits", ("bg", "cat", "person"), 2).person_probability(three),
                               S.softmax(three)[..., 2], atol=1e-6)
    assert S.OutputSpec("logits").activation == "softmax" and S.OutputSpec("probabilities").activation == "none"
    with pytest.raises(S.SpecError):
        S.OutputSpec("heatmap")


def test_model_spec_from_config_finds_the_person_label():
    config = ModelConfig(num_classes=3, input_size=(32, 48))
    spec = S.ModelSpec.from_config(config, ["background", "dog", "person"], output="category")
    assert spec.output.person_index == 2 and spec.output.dtype == "uint8" and spec.input.size == (32, 48)
    with pytest.raises(S.SpecError, match="2 labels for a model of 3"):
        S.ModelSpec.from_config(config, ["background", "person"])


def test_metrics_schema():
    good = {"portraits/val": {"person_iou": 0.87, "miou": 0.91, "images": 44}}
    assert S.validate_metrics(good) == good
    assert S.metric_key("/work/built/portraits/", "val") == "portraits/val"
    assert S.parse_metric("portraits/val:person_iou") == ("portraits/val", "person_iou")
    assert S.metric_value(good, "portraits/val", "miou") == 0.91
    assert S.metric_value(good, "coco/val", "miou") is None
    for bad, why in (({"miou": 0.9}, "not '<dataset>/<split>'"), ({"a/b": 0.9}, "dict of named figures"),
                     ({"a/b": {"miou": "high"}}, "must be a number"), ({"a/b": {"miou": float("nan")}}, "number")):
        with pytest.raises(S.SpecError, match=why):
            S.validate_metrics(bad)
    for text in ("portraits:miou", "portraits/val", "portraits/val:accuracy"):
        with pytest.raises(S.SpecError):
            S.parse_metric(text)
