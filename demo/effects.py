"""Background effects and the final composite.

Every background is computed at a reduced resolution and upsampled: a blur throws the
detail away anyway, and a Gaussian of sigma 15 at 640×480 costs ~10 ms where the same
look from a quarter-size image costs ~0.5 ms.

Effects: ``blur`` (Gaussian), ``bokeh`` (disc blur in a highlight-boosting gamma, so
bright spots bloom into discs like a lens' out-of-focus highlights), ``replace`` (an
image or a looped video), ``colour`` (colour pop: greyscale background), ``mask`` (the alpha shown as a
tint over the frame). `composite` blends frame over background with a float alpha;
`light_wrap` lets the background light bleed a little onto the person's edge.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demo.capture import put_unless_stopped, quiet_opencv, stop_reader
from mobile_seg.errors import ConfigError

EFFECTS = ("blur", "bokeh", "replace", "colour", "mask")
DEFAULT_STRENGTH = 15.0  # Gaussian sigma in pixels of the frame (bokeh: disc radius 1.5×)
BOKEH_GAMMA = 3.0

try:  # the shared palette gives the mask view the same person colour as `vis`
    from mobile_seg.data.palette import VOC_PALETTE as _PALETTE
    PERSON_BGR = tuple(int(c) for c in _PALETTE[1][::-1])
except ImportError:  # pragma: no cover - palette is optional for the demo
    PERSON_BGR = (0, 0, 128)


def _reduced(frame: np.ndarray, factor: float, small: np.ndarray | None = None) -> np.ndarray:
    """`frame` downscaled by `factor`; from `small` (a reduced copy of it) when that is
    still at least as large as the target, which reads far fewer pixels."""
    h, w = frame.shape[:2]
    if factor <= 1.0:
        return frame
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    src = small if small is not None and small.shape[1] >= size[0] and small.shape[0] >= size[1] else frame
    if src.shape[1::-1] == size:
        return src
    return cv2.resize(src, size, interpolation=cv2.INTER_AREA)


def _upsampled(small: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if small.shape[:2] == (h, w):
        return small
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def reduction_factor(extent_px: float, target: float = 3.0, max_factor: float = 8.0) -> float:
    """How much to downscale so a blur of `extent_px` frame pixels spans ~`target` pixels."""
    # Whole factors keep INTER_AREA on its fast integer path.
    return float(np.clip(round(extent_px / target), 1.0, max_factor))


def _masked(filt, small: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """`filt` applied to the background pixels only (normalised convolution).

    A plain blur of the whole frame smears the person into the background around them
    (a dark or coloured halo at the edge). Filtering `small * weight` and dividing by the
    filtered `weight` (weight = 1 - alpha) averages background pixels only. Where almost
    no background is near (deep inside the person, where the composite shows the frame
    anyway) the plain result is used.
    """
    if weight is None:
        return filt(small)
    small = small.astype(np.float32)
    num = filt(small * weight[..., None])
    den = filt(weight)
    plain = filt(small)
    t = np.clip(den * np.float32(20.0), 0.0, 1.0)  # trust the masked mean once den > 5 %
    masked = num / np.maximum(den, np.float32(1e-4))[..., None]
    return plain + t[..., None] * (masked - plain)


def gaussian_background(frame: np.ndarray, strength: float = DEFAULT_STRENGTH,
                        alpha: np.ndarray | None = None, small: np.ndarray | None = None) -> np.ndarray:
    """The frame blurred by a Gaussian of sigma `strength` (frame pixels), computed small.

    With `alpha` (person alpha at frame size) only background pixels are averaged;
    `small` (a reduced copy of the frame, optional) saves reading the full frame again.
    """
    if strength <= 0:
        return frame
    factor = reduction_factor(strength)
    small = _reduced(frame, factor, small)
    weight = None if alpha is None else np.float32(1.0) - _reduced(alpha, factor)
    sigma = strength / factor
    out = _masked(lambda x: cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), small, weight)
    if out.dtype != np.uint8:
        out = cv2.convertScaleAbs(out)  # values are >= 0: a saturating, rounding uint8 cast
    return _upsampled(out, frame.shape[:2])


def disc_kernel(radius: float) -> np.ndarray:
    """Normalised float32 disc of `radius` pixels with an anti-aliased rim."""
    r = max(radius, 0.5)
    n = int(np.ceil(r))
    y, x = np.mgrid[-n:n + 1, -n:n + 1].astype(np.float32)
    k = np.clip(r + 0.5 - np.sqrt(x * x + y * y), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def bokeh_background(frame: np.ndarray, strength: float = DEFAULT_STRENGTH,
                     alpha: np.ndarray | None = None, small: np.ndarray | None = None) -> np.ndarray:
    """A lens-like disc blur of radius 1.5 × `strength`, highlights boosted by a gamma."""
    if strength <= 0:
        return frame
    radius = 1.5 * strength
    factor = reduction_factor(radius, target=4.0)
    small = _reduced(frame, factor, small).astype(np.float32) * np.float32(1.0 / 255.0)
    weight = None if alpha is None else np.float32(1.0) - _reduced(alpha, factor)
    kernel = disc_kernel(radius / factor)
    lin = _masked(lambda x: cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT),
                  cv2.pow(small, BOKEH_GAMMA), weight)
    out = cv2.pow(np.maximum(lin, np.float32(0.0)), 1.0 / BOKEH_GAMMA)
    out = cv2.convertScaleAbs(out, alpha=255.0)  # values are >= 0: saturating uint8 cast
    return _upsampled(out, frame.shape[:2])


def colour_pop_background(frame: np.ndarray) -> np.ndarray:
    """The frame in greyscale (3 channels)."""
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def cover_resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`image` scaled to cover (h, w), keeping its aspect, centre-cropped."""
    h, w = hw
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    sh, sw = max(h, round(ih * scale)), max(w, round(iw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    y, x = (sh - h) // 2, (sw - w) // 2
    return np.ascontiguousarray(scaled[y:y + h, x:x + w])


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".gif")


class StillBackground:
    """A replacement image; `frame(hw)` is it scaled to cover (h, w) (cached)."""

    def __init__(self, image: np.ndarray, name: str = "image"):
        self.image = image
        self.name = name
        self._fitted: dict = {}

    def frame(self, hw: tuple[int, int]) -> np.ndarray:
        if hw not in self._fitted:
            self._fitted = {hw: cover_resize(self.image, hw)}
        return self._fitted[hw]

    def close(self) -> None:
        pass


class VideoBackground:
    """A replacement video, looped: each `frame(hw)` call gives its next frame scaled to
    cover (h, w). A reader thread decodes and scales ahead (two frames), so the frame loop
    does not wait for the decoder."""

    def __init__(self, path: str | os.PathLike, cap: "cv2.VideoCapture", first: np.ndarray):
        self.path = Path(path)
        self.name = self.path.name
        self.frames_decoded = 1
        self._cap = cap
        self._first = first
        self._hw: tuple[int, int] | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _next_raw(self) -> np.ndarray:
        ok, image = self._cap.read()
        if not ok or image is None:  # end of the clip: start again
            self._cap.release()
            self._cap = cv2.VideoCapture(str(self.path))
            ok, image = self._cap.read()
            if not ok or image is None:
                return self._first
        self.frames_decoded += 1
        return image

    def _reader(self, hw: tuple[int, int]) -> None:
        while put_unless_stopped(self._queue, cover_resize(self._next_raw(), hw), self._stop):
            pass

    def frame(self, hw: tuple[int, int]) -> np.ndarray:
        if self._hw != hw:  # first call, or a new frame size: restart the reader for it
            self.close()
            self._hw, self._stop = hw, threading.Event()
            self._queue = queue.Queue(maxsize=2)
            self._queue.put(cover_resize(self._first, hw))
            self._thread = threading.Thread(target=self._reader, args=(hw,), name="background-video",
                                            daemon=True)
            self._thread.start()
        return self._queue.get()

    def close(self) -> None:
        stop_reader(self._queue, self._stop, self._thread)
        self._thread = None
        self._hw = None


Background = StillBackground | VideoBackground


def load_background(path: str | os.PathLike) -> Background:
    """A replacement background from an image or a video file (looped); ConfigError if it
    is missing or neither."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("background not found", path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            return StillBackground(image, path.name)
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise ConfigError("cannot read background (not an image or a video OpenCV can decode)", path)
    return VideoBackground(path, cap, first)


def as_background(background) -> Background | None:
    """A Background from a Background, a BGR image array or None."""
    if background is None or isinstance(background, (StillBackground, VideoBackground)):
        return background
    return StillBackground(np.asarray(background))


def composite(frame: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """alpha * frame + (1 - alpha) * background, uint8; exactly the frame where alpha = 1.

    alpha: float32 [H, W] in [0, 1].
    """
    # cv2.subtract(1.0, alpha) takes OpenCV 4.12's slow scalar path; numpy is ~100x faster.
    return cv2.blendLinear(frame, background, alpha, np.float32(1.0) - alpha)


def light_wrap(image: np.ndarray, background: np.ndarray, alpha: np.ndarray,
               amount: float = 0.5, spread: float = 8.0) -> np.ndarray:
    """Blend the background into the person's rim (within ~`spread` px of the edge)."""
    factor = reduction_factor(spread)
    small = _reduced(alpha, factor)
    outside = np.float32(1.0) - cv2.GaussianBlur(small, (0, 0), spread / factor)
    wrap = cv2.multiply(_upsampled(outside, alpha.shape[:2]), alpha, scale=amount)
    return cv2.blendLinear(background, image, wrap, np.float32(1.0) - wrap)


def mask_view(frame: np.ndarray, alpha: np.ndarray, tint: float = 0.55) -> np.ndarray:
    """The frame with the person tinted in the palette's person colour, background darkened."""
    colour = np.empty_like(frame)
    colour[:] = PERSON_BGR
    tinted = cv2.addWeighted(frame, 1.0 - tint, colour, tint, 0.0)
    dark = cv2.convertScaleAbs(frame, alpha=0.35)
    return composite(tinted, dark, alpha)


def check_effect(name: str, strength: float) -> None:
    """ConfigError for an unknown effect or a negative strength."""
    if name not in EFFECTS:
        raise ConfigError(f"unknown effect {name!r}; expected one of {', '.join(EFFECTS)}")
    if strength < 0:
        raise ConfigError(f"--blur-strength must be >= 0, got {strength}")


@dataclass
class Effect:
    """One background effect with its settings; `apply(frame, alpha)` renders a frame.

    Args:
        name: one of EFFECTS.
        strength: blur sigma in frame pixels (blur), 1.5× disc radius (bokeh).
        background: replacement for ``replace``: a Background (image or looped video)
            or a BGR image array.
        wrap: light-wrap amount (0 = off).
    """

    name: str = "blur"
    strength: float = DEFAULT_STRENGTH
    background: Background | np.ndarray | None = None
    wrap: float = 0.0

    def __post_init__(self):
        self.background = as_background(self.background)
        check_effect(self.name, self.strength)
        if self.name == "replace" and self.background is None:
            raise ConfigError("--effect replace needs --background IMAGE or VIDEO")

    def render_background(self, frame: np.ndarray, alpha: np.ndarray | None = None,
                          small: np.ndarray | None = None) -> np.ndarray:
        """The background layer for this frame (frame size, BGR uint8).

        With `alpha`, blurs average background pixels only (no halo around the person);
        `small` is an optional reduced copy of the frame to blur from.
        """
        if self.name == "blur":
            return gaussian_background(frame, self.strength, alpha, small)
        if self.name == "bokeh":
            return bokeh_background(frame, self.strength, alpha, small)
        if self.name == "colour":
            return colour_pop_background(frame)
        if self.name == "replace":
            return self.background.frame(frame.shape[:2])
        raise ConfigError(f"effect {self.name!r} has no background layer")

    def apply(self, frame: np.ndarray, alpha: np.ndarray, small: np.ndarray | None = None) -> np.ndarray:
        """The rendered frame: `frame` over this effect's background, by `alpha`."""
        if self.name == "mask":
            return mask_view(frame, alpha)
        background = self.render_background(frame, alpha, small)
        out = composite(frame, background, alpha)
        if self.wrap > 0 and self.name != "colour":
            out = light_wrap(out, background, alpha, self.wrap)
        return out
