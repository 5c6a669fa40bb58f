"""Mask post-processing on arrays: EMA math, guided filter, feathered alpha."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from demo.postprocess import (TemporalSmoother, fast_guided_alpha, feather, guided_filter,
                              to_float_grey, upsampled_alpha)


def test_ema_weight_is_one_for_confident_pixels_and_one_minus_smoothing_at_half():
    sm = TemporalSmoother(0.6)
    w = sm.weight(np.float32([0.0, 1.0, 0.5, 0.25, 0.75]))
    np.testing.assert_allclose(w, [1.0, 1.0, 0.4, 0.7, 0.7], atol=1e-6)


def test_ema_update_matches_the_formula():
    sm = TemporalSmoother(0.6)
    p0 = np.float32([[0.5, 0.2, 0.9, 0.5]])
    p1 = np.float32([[0.4, 0.0, 1.0, 0.9]])
    np.testing.assert_array_equal(sm(p0), p0)  # first frame initialises the state
    out = sm(p1)
    w = 1.0 - 0.6 * (1.0 - np.abs(2.0 * p1 - 1.0))
    np.testing.assert_allclose(out, w * p1 + (1.0 - w) * p0, atol=1e-6)
    # A confident pixel (p = 0 or 1) takes the new value at once: no ghost.
    assert out[0, 1] == 0.0 and out[0, 2] == 1.0


def test_ema_off_returns_input_and_constant_input_is_a_fixed_point():
    p = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    assert TemporalSmoother(0.0)(p) is p
    sm = TemporalSmoother(0.8)
    for _ in range(5):
        out = sm(p)
    np.testing.assert_allclose(out, p, atol=1e-6)


def test_ema_damps_uncertain_flicker():
    """An edge pixel alternating 0.4 / 0.6 (label flips every frame) stops flipping."""
    sm = TemporalSmoother(0.6)
    labels = [bool(sm(np.float32([[0.6 if t % 2 else 0.45]]))[0, 0] > 0.5) for t in range(20)]
    raw = [t % 2 == 1 for t in range(20)]
    assert sum(a != b for a, b in zip(raw, raw[1:])) == 19
    assert sum(a != b for a, b in zip(labels[5:], labels[6:])) == 0


def test_confidence_weighting_lags_less_than_plain_ema_on_a_moving_person():
    """A confidently segmented square moving 4 px a frame: the weighted EMA keeps up."""
    def square(x):
        p = np.full((32, 64), 0.02, np.float32)
        p[8:24, x:x + 16] = 0.98
        return p

    errors = {}
    for weighted in (True, False):
        sm = TemporalSmoother(0.6, weighted=weighted)
        err = []
        for t in range(10):
            p = square(4 * t)
            err.append(np.mean((sm(p) > 0.5) != (p > 0.5)))
        errors[weighted] = np.mean(err)
    assert errors[True] == 0.0
    assert errors[False] > 0.01


def test_motion_adaptive_weight_takes_large_disagreements_at_once():
    """Plain EMA 0.8 (weight 0.2 everywhere): with motion D = 0.5 a change of 0.1 (< D/4)
    keeps weight 0.2, a change of 0.5 (= D) gets weight 1, halfway up the ramp half of it."""
    sm = TemporalSmoother(0.8, weighted=False, motion=0.5)
    state = np.zeros((1, 4), np.float32)
    prob = np.array([[0.1, 0.5, 0.9, 0.3125]], np.float32)  # 0.3125 = D/4 + (D - D/4) / 2
    w = sm.weight(prob, state)
    np.testing.assert_allclose(w, [[0.2, 1.0, 1.0, 0.2 + 0.8 * 0.5]], atol=1e-6)
    assert np.all(TemporalSmoother(0.8, weighted=False).weight(prob, state) == np.float32(0.2))


def test_motion_adaptive_smoothing_follows_a_step_and_still_damps_noise():
    rng = np.random.default_rng(0)
    adaptive, plain = TemporalSmoother(0.8, weighted=False, motion=0.5), TemporalSmoother(0.8, weighted=False)
    base = np.full((8, 8), 0.5, np.float32)
    for sm in (adaptive, plain):
        sm(base)
        for _ in range(10):  # edge noise of ±0.05: averaged by both
            out = sm(base + rng.uniform(-0.05, 0.05, base.shape).astype(np.float32))
        assert np.abs(out - 0.5).max() < 0.03
    step = np.full((8, 8), 1.0, np.float32)  # the person moved in: 0.5 → 1 (d = 0.5)
    assert adaptive(step).min() > 0.97 and plain(step).max() < 0.65


def test_smoothing_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        TemporalSmoother(1.0)


def _step_scene():
    """A guide with a sharp vertical edge at x = 32 and a blurry mask of the same edge."""
    guide = np.zeros((64, 64), np.float32)
    guide[:, 32:] = 1.0
    mask = cv2.GaussianBlur(guide, (0, 0), 4.0)
    return guide, mask


def test_guided_filter_snaps_a_blurry_mask_to_the_guide_edge():
    guide, mask = _step_scene()
    out = guided_filter(guide, mask, radius=8, eps=1e-3)
    box = cv2.blur(mask, (17, 17))
    jump = lambda m: float(m[32, 32] - m[32, 31])  # noqa: E731  (across the guide's edge)
    assert jump(out) > 0.5 > 0.2 > jump(mask) > jump(box)
    assert out[32, 5] < 0.05 and out[32, 60] > 0.95  # flat regions keep their value


def test_guided_filter_preserves_a_sharp_edge_while_removing_noise():
    rng = np.random.default_rng(0)
    guide, _ = _step_scene()
    noisy = (guide + rng.normal(0, 0.1, guide.shape)).astype(np.float32)
    out = guided_filter(guide, noisy, radius=4, eps=1e-3)
    box = cv2.blur(noisy, (9, 9))
    assert out[:, 32].mean() - out[:, 31].mean() > 0.9  # the step survives whole
    assert box[:, 32].mean() - box[:, 31].mean() < 0.2  # a box filter smears it
    assert out[:, 4:24].std() < 0.3 * noisy[:, 4:24].std()


def test_guided_filter_smooths_noise_where_the_guide_is_flat():
    rng = np.random.default_rng(0)
    guide = np.full((64, 64), 0.5, np.float32)
    noisy = np.clip(0.5 + rng.normal(0, 0.2, (64, 64)), 0, 1).astype(np.float32)
    assert guided_filter(guide, noisy, radius=4, eps=1e-3).std() < 0.25 * noisy.std()


def test_fast_guided_alpha_keeps_full_resolution_edges():
    guide, _ = _step_scene()
    big = cv2.resize(guide, (256, 256), interpolation=cv2.INTER_NEAREST)  # edge at x = 128
    small = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    prob = cv2.GaussianBlur(small, (0, 0), 2.0)
    alpha = fast_guided_alpha(big, small, prob, radius=2, eps=1e-3)
    assert alpha.shape == (256, 256) and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    row = alpha[128]
    assert np.sum((row > 0.05) & (row < 0.95)) <= 2  # vs ~16 px for the upsampled prob
    assert row[126] < 0.5 < row[129]
    plain = upsampled_alpha(prob, (256, 256))
    assert np.sum((plain[128] > 0.05) & (plain[128] < 0.95)) > 6


def test_feather_is_a_clipped_ramp_in_unit_range():
    p = np.linspace(-0.2, 1.2, 141, dtype=np.float32)
    a = feather(p, 0.3, 0.7)
    assert a.min() == 0.0 and a.max() == 1.0
    assert np.all(a[p <= 0.3] == 0.0) and np.all(a[p >= 0.701] == 1.0)
    np.testing.assert_allclose(feather(np.float32([0.5]), 0.3, 0.7), [0.5], atol=1e-6)
    assert np.all(np.diff(a) >= 0)


def test_alpha_in_unit_range_on_random_inputs():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    grey = to_float_grey(frame)
    small = cv2.resize(grey, (64, 48), interpolation=cv2.INTER_AREA)
    prob = rng.random((48, 64), dtype=np.float32)
    for alpha in (fast_guided_alpha(grey, small, prob), upsampled_alpha(prob, (96, 128))):
        assert alpha.shape == (96, 128)
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0
