"""Temporal smoothing on a real sequence (DAVIS parkour, 100 frames, 640×360) with
MediaPipe's selfie model: the mask flickers less with smoothing and IoU holds; the
mask-lag measure, motion-adaptive smoothing and --delay."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from demo.app import load_model
from demo.pipeline import Settings
from demo.stats import flicker, mask_lag
from demo.temporal_eval import compare_smoothing, evaluate, load_sequence, load_sequences


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
    # Default smoothing 0.6, confidence-weighted; not motion-adaptive (with this model's
    # limb flicker that gives back part of the gain: docs/demo.md).
    r = compare_smoothing(model, frames, masks, Settings(resize=resize, motion=0.0))
    off, on = r["off"], r["on"]
    assert on["gt_flicker"] == off["gt_flicker"] > 0
    assert on["excess_flicker"] < off["excess_flicker"] - 0.002, r
    assert on["iou"] >= off["iou"] - 0.01, r


def test_plain_ema_ghosts_where_confidence_weighting_does_not(model, sequence):
    """Same smoothing strength, plain EMA: the fast-moving runner leaves a trail and IoU drops."""
    frames, masks = sequence
    weighted = evaluate(model, frames, masks, Settings(resize="letterbox", smoothing=0.8, motion=0.0))
    plain = evaluate(model, frames, masks, Settings(resize="letterbox", smoothing=0.8, motion=0.0,
                                                    confidence_weighted=False))
    assert weighted["iou"] > plain["iou"] + 0.05, (weighted, plain)
    assert plain["lag"] > weighted["lag"] + 0.3, (weighted, plain)  # the ghost is a lag


def test_motion_adaptive_smoothing_removes_the_lag(model, sequence):
    """Where the new mask disagrees with the smoothed one (the runner moved) it is taken at
    once: the lag of strong smoothing goes, IoU comes back, flicker stays below the
    unsmoothed mask's."""
    frames, masks = sequence
    s = Settings(resize="letterbox", smoothing=0.8, confidence_weighted=False)
    plain = evaluate(model, frames, masks, Settings(resize="letterbox", smoothing=0.0))
    lagging = evaluate(model, frames, masks, replace(s, motion=0.0))
    adaptive = evaluate(model, frames, masks, replace(s, motion=0.5))
    assert lagging["lag"] > 0.5 and abs(adaptive["lag"]) < lagging["lag"] - 0.4, (lagging, adaptive)
    assert adaptive["iou"] > lagging["iou"] + 0.05, (lagging, adaptive)
    assert adaptive["flicker"] < plain["flicker"], (plain, adaptive)


def test_delay_shifts_the_lag_by_whole_frames(model, sequence):
    """--every 2 --reuse hold makes the mask trail by ~half a frame; --delay 1 shows each
    frame one step late, so the same masks now lead the picture by about half a frame."""
    frames, masks = sequence
    base = dict(resize="letterbox", smoothing=0.0, every=2)
    held = evaluate(model, frames, masks, Settings(**base))
    delayed = evaluate(model, frames, masks, Settings(**base, delay=1))
    assert 0.25 < held["lag"] < 0.9, held  # 0.43 here
    # Shifted by about a frame (by −0.905 here).
    assert delayed["lag"] == pytest.approx(held["lag"] - 1.0, abs=0.2), (held, delayed)


def test_mask_lag_measure():
    """A square moving 4 px per frame; predictions that show it k frames late."""
    def square(x):
        m = np.zeros((32, 96), bool)
        m[8:24, x:x + 16] = True
        return m

    gts = [square(4 * t) for t in range(18)]
    for k in (0, 1, 2):
        preds = [square(4 * max(0, t - k)) for t in range(18)]
        assert mask_lag(preds, gts) == pytest.approx(k, abs=0.05)
    halfway = [square(max(0, 4 * t - 6)) for t in range(18)]  # 1.5 frames late
    assert mask_lag(halfway, gts) == pytest.approx(1.5, abs=0.1)
    leading = [square(4 * t + 4) for t in range(18)]
    assert mask_lag(leading, gts) == pytest.approx(-1.0, abs=0.05)
    assert mask_lag(gts[:2], gts[:2]) == 0.0  # too short to tell


def test_sequences_split_by_name(shared_data):
    seqs = load_sequences(shared_data / "davis16_person", "val")
    assert [(name, len(frames)) for name, frames, _ in seqs] == [("hockey", 75), ("lucia", 70)]


def test_flicker_measure():
    import numpy as np

    a, b = np.zeros((2, 4), bool), np.zeros((2, 4), bool)
    b[0, :2] = True
    assert flicker([a, b, b]) == pytest.approx((2 / 8 + 0) / 2)
    assert flicker([a]) == 0.0
