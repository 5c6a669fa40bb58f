"""Frame ↔ model-input geometry, --every reuse, and the shift estimate, with a fake model."""
from __future__ import annotations

import numpy as np
import pytest

from demo.segmenter import Segmenter, estimate_shift, fit_frame, plan_fit, shift_map, unfit_map
from mobile_seg.errors import ConfigError


class RedModel:
    """Stands in for TFLiteModel: 'person' = the red channel of its RGB input."""

    def __init__(self, size=(64, 64), resize="stretch"):
        self.input_size = size
        self.input_spec = {"mean": [0.0] * 3, "std": [255.0] * 3, "color": "RGB", "resize": resize}
        self.calls = 0
        self.inputs = []

    def person_probability(self, image_rgb):
        assert image_rgb.shape[:2] == self.input_size and image_rgb.dtype == np.uint8
        self.calls += 1
        self.inputs.append(image_rgb)
        return image_rgb[..., 0].astype(np.float32) / 255.0


def half_red_frame(h=90, w=160):
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, : w // 2] = (0, 0, 255)  # BGR red on the left half
    return frame


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_probability_maps_back_onto_the_frame(mode):
    model = RedModel()
    seg = Segmenter(model, resize=mode)
    frame = half_red_frame()
    prob = seg(frame, (90, 160)).prob
    assert prob.shape == (90, 160) and prob.dtype == np.float32
    assert prob[:, :70].min() > 0.95 and prob[:, 90:].max() < 0.05


def test_letterbox_pads_with_the_mean_pixel_and_keeps_aspect():
    fit = plan_fit((90, 160), (64, 64), "letterbox")
    assert fit.scaled_hw == (36, 64) and fit.offset == (14, 0)
    x = fit_frame(np.full((90, 160, 3), 200, np.uint8), fit, (64, 64), pad_value=127.5)
    assert x.shape == (64, 64, 3)
    assert np.all(x[:14] == 128) and np.all(x[14:50] == 200) and np.all(x[50:] == 128)


def test_crop_covers_the_input_and_unfit_replicates_the_cut_margins():
    fit = plan_fit((90, 160), (64, 64), "crop")
    assert fit.scaled_hw == (64, 114) and fit.offset == (0, -25)
    prob = np.zeros((64, 64), np.float32)
    prob[:, 0] = 1.0  # leftmost visible column
    back = unfit_map(prob, fit, (90, 160))
    assert back.shape == (90, 160)
    assert back[:, :30].min() > 0.9  # the cut-off left margin repeats the edge value


def test_rgb_order_and_model_resolution():
    model = RedModel(size=(32, 48))
    Segmenter(model)(half_red_frame(), (45, 80))
    x = model.inputs[-1]
    assert x.shape == (32, 48, 3)
    assert x[:, :20, 0].min() == 255 and x[:, :20, 2].max() == 0  # red in channel 0 (RGB)


def test_every_n_runs_the_model_on_every_nth_frame_and_holds_between():
    model = RedModel()
    seg = Segmenter(model, every=3)
    frame = half_red_frame()
    results = [seg(frame, (45, 80)) for _ in range(7)]
    assert [r.inferred for r in results] == [True, False, False, True, False, False, True]
    assert model.calls == 3
    assert results[1].prob is results[0].prob and results[1].model_ms == 0.0


def test_model_input_resize_comes_from_the_model_spec():
    assert Segmenter(RedModel(resize="letterbox")).resize == "letterbox"
    assert Segmenter(RedModel(resize="letterbox"), resize="crop").resize == "crop"
    with pytest.raises(ConfigError, match="--every"):
        Segmenter(RedModel(), every=0)
    with pytest.raises(ConfigError, match="resize"):
        Segmenter(RedModel(), resize="squash")


def _blob_scene(dx):
    rng = np.random.default_rng(0)
    texture = (rng.random((40, 30)) * 255).astype(np.uint8)
    grey = np.full((120, 160), 90, np.uint8)
    prob = np.zeros((120, 160), np.float32)
    grey[40:80, 50 + dx:80 + dx] = texture
    prob[40:80, 50 + dx:80 + dx] = 1.0
    return grey, prob


def test_shift_estimate_follows_the_person():
    g0, p0 = _blob_scene(0)
    g1, p1 = _blob_scene(6)
    dx, dy = estimate_shift(g0, g1, p0)
    assert abs(dx - 6) < 1.0 and abs(dy) < 1.0
    moved = shift_map(p0, dx, dy)
    assert np.mean((moved > 0.5) == (p1 > 0.5)) > 0.99
    assert estimate_shift(g0, g1, np.zeros_like(p0)) == (0.0, 0.0)  # nobody: no shift


def test_reuse_shift_moves_the_held_mask():
    model = RedModel()
    seg = Segmenter(model, every=2, reuse="shift")
    f0 = np.zeros((120, 160, 3), np.uint8)
    f1 = np.zeros((120, 160, 3), np.uint8)
    g0, _ = _blob_scene(0)
    g1, _ = _blob_scene(6)
    f0[40:80, 50:80, 2] = 255  # red person for the fake model
    r0 = seg(f0, (120, 160), g0)
    r1 = seg(f1, (120, 160), g1)
    assert r0.inferred and not r1.inferred
    assert abs(r1.shift[0] - 6) < 1.0
    assert r1.prob[60, 83] > 0.9 and r1.prob[60, 52] < 0.1
    assert abs(np.count_nonzero(r1.prob > 0.5) - np.count_nonzero(r0.prob > 0.5)) <= 40  # moved, not grown
