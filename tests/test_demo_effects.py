"""Background effects and the composite, on arrays and on a real photo."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from demo.effects import (Effect, bokeh_background, colour_pop_background, composite, cover_resize,
                          disc_kernel, gaussian_background, light_wrap, mask_view)
from mobile_seg.errors import ConfigError


def lap_var(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@pytest.fixture(scope="module")
def photo(shared_data):
    image = cv2.imread(str(shared_data / "portraits" / "JPEGImages" / "portrait_039.jpg"))
    assert image is not None
    return cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("blur", [gaussian_background, bokeh_background])
def test_blur_strength_is_monotonic(photo, blur):
    variances = [lap_var(blur(photo, k)) for k in (0, 2, 5, 10, 20, 40)]
    assert variances[0] == lap_var(photo)  # strength 0 = no blur
    assert all(a > b for a, b in zip(variances, variances[1:])), variances
    assert variances[-1] < 0.02 * variances[0]


@pytest.mark.parametrize("blur, tolerance", [(gaussian_background, 3), (bokeh_background, 20)])
def test_blur_keeps_shape_dtype_and_mean_colour(photo, blur, tolerance):
    """Bokeh averages in a gamma-3 space (highlights bloom), so it brightens a little."""
    out = blur(photo, 15)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.abs(out.reshape(-1, 3).mean(0) - photo.reshape(-1, 3).mean(0)).max() < tolerance


def test_masked_blur_leaves_no_halo_around_the_person():
    """A dark person on a bright wall: the background next to them stays bright."""
    frame = np.full((120, 160, 3), 230, np.uint8)
    frame[30:120, 60:100] = 20
    alpha = np.zeros((120, 160), np.float32)
    alpha[30:120, 60:100] = 1.0
    plain = gaussian_background(frame, 10)
    masked = gaussian_background(frame, 10, alpha)
    assert plain[80, 56].mean() < 180  # the plain blur darkens the wall beside the person
    assert masked[80, 56].mean() > 220
    assert bokeh_background(frame, 10, alpha)[80, 56].mean() > 215


def test_disc_kernel_is_normalised_and_round():
    k = disc_kernel(5)
    assert k.shape == (11, 11) and abs(k.sum() - 1.0) < 1e-5
    assert k[5, 5] > 0 and k[0, 0] == 0 and k[0, 5] > 0


def test_composite_equals_frame_where_alpha_is_one_and_background_where_zero():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    alpha = rng.random((48, 64), dtype=np.float32)
    alpha[:, :20] = 1.0
    alpha[:, 40:] = 0.0
    out = composite(frame, bg, alpha)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :20], frame[:, :20])
    np.testing.assert_array_equal(out[:, 40:], bg[:, 40:])
    mid = alpha[:, 20:40, None]
    expected = mid * frame[:, 20:40] + (1 - mid) * bg[:, 20:40]
    assert np.abs(out[:, 20:40] - expected).max() <= 1.0


@pytest.mark.parametrize("name", ["blur", "bokeh", "colour", "replace"])
def test_effects_keep_the_person_exactly(photo, name):
    alpha = np.zeros(photo.shape[:2], np.float32)
    alpha[60:200, 100:220] = 1.0
    background = np.zeros((50, 80, 3), np.uint8) if name == "replace" else None
    out = Effect(name, 15, background).apply(photo, alpha)
    np.testing.assert_array_equal(out[60:200, 100:220], photo[60:200, 100:220])
    assert not np.array_equal(out[:40], photo[:40])


def test_colour_pop_background_is_grey(photo):
    bg = colour_pop_background(photo)
    assert bg.shape == photo.shape
    assert np.array_equal(bg[..., 0], bg[..., 1]) and np.array_equal(bg[..., 1], bg[..., 2])


def test_replace_uses_a_cover_resized_background():
    frame = np.zeros((60, 80, 3), np.uint8)
    bg = np.zeros((100, 100, 3), np.uint8)
    bg[:, :50] = 255
    fitted = cover_resize(bg, (60, 80))
    assert fitted.shape == (60, 80, 3)
    out = Effect("replace", background=bg).apply(frame, np.zeros((60, 80), np.float32))
    np.testing.assert_array_equal(out, fitted)


def test_light_wrap_only_touches_the_person_rim():
    frame = np.zeros((80, 80, 3), np.uint8)
    bg = np.full((80, 80, 3), 250, np.uint8)
    alpha = np.zeros((80, 80), np.float32)
    alpha[20:60, 20:60] = 1.0
    out = light_wrap(composite(frame, bg, alpha), bg, alpha, amount=0.5, spread=4)
    assert out[40, 21].mean() > 20  # rim lit by the background
    assert out[40, 40].mean() == 0  # centre untouched
    np.testing.assert_array_equal(out[:, :15], bg[:, :15])  # background unchanged


def test_mask_view_tints_the_person_and_darkens_the_background(photo):
    alpha = np.zeros(photo.shape[:2], np.float32)
    alpha[:, 160:] = 1.0
    out = mask_view(photo, alpha)
    assert out[:, :160].mean() < 0.5 * photo[:, :160].mean()
    assert out[:, 160:, 2].mean() > out[:, 160:, 0].mean()  # reddish (BGR) person


def test_effect_settings_are_checked():
    with pytest.raises(ConfigError, match="--background"):
        Effect("replace")
    with pytest.raises(ConfigError, match="unknown effect"):
        Effect("sepia")
    with pytest.raises(ConfigError, match="blur-strength"):
        Effect("blur", -1)


# --- video backgrounds -------------------------------------------------------------------
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)]


@pytest.fixture
def colour_clip(tmp_path):
    """A 5-frame MJPG clip, one solid colour per frame (BGR)."""
    path = tmp_path / "colours.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for c in COLOURS:
        writer.write(np.full((48, 64, 3), c, np.uint8))
    writer.release()
    return path


def nearest_colour(image: np.ndarray) -> int:
    mean = image.reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(mean - c).sum() for c in COLOURS]))


def test_video_background_loops_frame_by_frame(colour_clip):
    from demo.effects import VideoBackground, load_background

    bg = load_background(colour_clip)
    assert isinstance(bg, VideoBackground)
    try:
        seq = [nearest_colour(bg.frame((30, 40))) for _ in range(12)]
        assert seq == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
        assert bg.frame((30, 40)).shape == (30, 40, 3)
        assert bg.frame((96, 64)).shape == (96, 64, 3)  # a new size restarts the reader for it
    finally:
        bg.close()


def test_replace_effect_with_a_video_background(colour_clip):
    from demo.effects import load_background

    effect = Effect("replace", background=load_background(colour_clip))
    frame = np.full((60, 80, 3), 128, np.uint8)
    alpha = np.zeros((60, 80), np.float32)
    try:
        assert [nearest_colour(effect.apply(frame, alpha)) for _ in range(6)] == [0, 1, 2, 3, 4, 0]
    finally:
        effect.background.close()


def test_background_errors(tmp_path):
    from demo.effects import load_background

    with pytest.raises(ConfigError, match="background not found"):
        load_background(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(ConfigError, match="cannot read background"):
        load_background(junk)
