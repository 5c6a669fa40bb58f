"""Temporal smoothing on a real sequence (DAVIS parkour, 100 frames, 640×360) with
MediaPipe's selfie model: the mask flickers less with smoothing and IoU holds."""
from __future__ import annotations

import pytest

from demo.app import load_model
from demo.pipeline import Settings
from demo.stats import flicker
from demo.temporal_eval import compare_smoothing, evaluate, load_sequence


@pytest.fixture(scope="module")
def sequence(shared_data):
    frames, masks = load_sequence(shared_data / "davis_parkour", "all")
    assert len(frames) == 100 and frames[0].shape == (360, 640, 3)
    return frames, masks


@pytest.fixture(scope="module")
def model(shared_data):
    return load_model(shared_data / "models" / "selfie_segmentation.tflite")


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_smoothing_reduces_flicker_without_costing_iou(model, sequence, resize):
    frames, masks = sequence
    r = compare_smoothing(model, frames, masks, Settings(resize=resize))  # default smoothing 0.6
    off, on = r["off"], r["on"]
    assert on["gt_flicker"] == off["gt_flicker"] > 0
    assert on["excess_flicker"] < off["excess_flicker"] - 0.002, r
    assert on["iou"] >= off["iou"] - 0.01, r


def test_plain_ema_ghosts_where_confidence_weighting_does_not(model, sequence):
    """Same smoothing strength, plain EMA: the fast-moving runner leaves a trail and IoU drops."""
    frames, masks = sequence
    weighted = evaluate(model, frames, masks, Settings(resize="letterbox", smoothing=0.8))
    plain = evaluate(model, frames, masks, Settings(resize="letterbox", smoothing=0.8, confidence_weighted=False))
    assert weighted["iou"] > plain["iou"] + 0.05, (weighted, plain)


def test_flicker_measure():
    import numpy as np

    a, b = np.zeros((2, 4), bool), np.zeros((2, 4), bool)
    b[0, :2] = True
    assert flicker([a, b, b]) == pytest.approx((2 / 8 + 0) / 2)
    assert flicker([a]) == 0.0
