"""Frame → person probability at any requested size, with the model's own resize rule.

The model sees the frame resized to its input size by one of three rules (from the
model's metadata, `input.resize`; MediaPipe's models stretch):

- ``stretch``: resize to the input size, ignoring the aspect ratio;
- ``letterbox``: keep the aspect, fit inside, pad with the mean pixel;
- ``crop``: keep the aspect, cover the input, centre-crop (the cut-off margins reuse the
  nearest predicted values).

The probability map is then mapped back onto the frame (or a reduced working size).
With ``every=N`` the model runs on every Nth frame; frames in between reuse the last map,
either held as is or shifted by the person's estimated motion (``reuse="shift"``: a phase
correlation of the person's bounding box between the last inferred frame and this one;
no optical flow, well under a millisecond at the working size).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from mobile_seg.errors import ConfigError
from mobile_seg.spec import RESIZE_RULES, Fit, InputSpec, SpecError

RESIZE_MODES = RESIZE_RULES
REUSE_MODES = ("hold", "shift")


def plan_fit(frame_hw: tuple[int, int], input_hw: tuple[int, int], mode: str) -> Fit:
    """The placement of a frame of `frame_hw` into a model input of `input_hw` (`InputSpec.plan_fit`)."""
    try:
        return InputSpec(*input_hw).plan_fit(frame_hw, mode)
    except SpecError as e:
        raise ConfigError(str(e)) from None


def fit_frame(frame: np.ndarray, fit: Fit, input_hw: tuple[int, int], pad_value: float = 0.0) -> np.ndarray:
    """Resize/pad/crop `frame` (H, W, 3 uint8) to the model input size by `fit` (`InputSpec.fit`)."""
    return InputSpec(*input_hw, mean=pad_value).fit(frame, fit)


def unfit_map(prob: np.ndarray, fit: Fit, out_hw: tuple[int, int]) -> np.ndarray:
    """Map a model-resolution map back onto the frame, resized to `out_hw` (`InputSpec.map_back`)."""
    return InputSpec(*prob.shape[:2]).map_back(prob, fit, out_hw)


def estimate_shift(prev_grey: np.ndarray, grey: np.ndarray, prob: np.ndarray,
                   margin: int = 8, min_response: float = 0.05) -> tuple[float, float]:
    """Translation (dx, dy) of the person between two grey frames, from a phase correlation
    of the person's bounding box (probability > 0.5, plus a margin), windowed by the
    (blurred) probability so the person, not the background, decides. (0, 0) when unsure."""
    ys, xs = np.nonzero(prob > 0.5)
    if len(xs) < 16:
        return 0.0, 0.0
    h, w = prob.shape
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    if y1 - y0 < 8 or x1 - x0 < 8:
        return 0.0, 0.0
    a = np.float32(prev_grey[y0:y1, x0:x1])
    b = np.float32(grey[y0:y1, x0:x1])
    window = cv2.createHanningWindow((x1 - x0, y1 - y0), cv2.CV_32F)
    window *= cv2.GaussianBlur(prob[y0:y1, x0:x1], (0, 0), 3.0)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    if response < min_response or abs(dx) > (x1 - x0) / 3 or abs(dy) > (y1 - y0) / 3:
        return 0.0, 0.0
    return float(dx), float(dy)


def shift_map(prob: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """`prob` translated by (dx, dy) pixels; edges repeat the border values."""
    if dx == 0.0 and dy == 0.0:
        return prob
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(prob, m, (prob.shape[1], prob.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Segmentation:
    """A person probability map at the requested size and how it was obtained."""

    prob: np.ndarray  # float32 [h, w] in [0, 1]
    inferred: bool  # False: reused (held or shifted) from an earlier frame
    model_ms: float  # preprocess + invoke time (0 when reused)
    shift: tuple[float, float] = (0.0, 0.0)


class Segmenter:
    """Runs a TFLiteModel on frames; see the module docstring.

    Args:
        model: a loaded `mobile_seg.tflite_model.TFLiteModel` (segmentation output).
        resize: stretch | letterbox | crop (default: the model's metadata, else stretch).
        every: run the model on every Nth frame (N >= 1), reuse the map in between.
        reuse: hold | shift: how frames between model runs reuse the last map.
    """

    def __init__(self, model, *, resize: str | None = None, every: int = 1, reuse: str = "hold"):
        if every < 1:
            raise ConfigError(f"--every must be >= 1, got {every}")
        if reuse not in REUSE_MODES:
            raise ConfigError(f"unknown reuse mode {reuse!r}; expected one of {', '.join(REUSE_MODES)}")
        self.model = model
        spec = model.input_spec
        self.resize = resize or spec.get("resize", "stretch")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode {self.resize!r}; expected one of {', '.join(RESIZE_MODES)}")
        self.rgb = str(spec.get("color", "RGB")).upper() == "RGB"
        self.pad_value = float(np.mean(spec.get("mean", [0.0, 0.0, 0.0])))
        self.input = InputSpec(*model.input_size, mean=spec.get("mean", 0.0), std=spec.get("std", 1.0),
                               resize=self.resize)
        self.every = every
        self.reuse = reuse
        self.input_hw = model.input_size
        self._fit: Fit | None = None
        self._count = 0
        self._last: np.ndarray | None = None
        self._last_grey: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the held map (next frame runs the model)."""
        self._count = 0
        self._last = None
        self._last_grey = None

    def scaled_size(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) a frame of `frame_hw` is resized to before padding/cropping to the input."""
        return plan_fit(frame_hw, self.input_hw, self.resize).scaled_hw

    def model_probability(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Fit]:
        """Person probability at model resolution for a BGR frame, and the fit used."""
        hw = frame_bgr.shape[:2]
        if self._fit is None or self._fit.image_hw != hw:
            self._fit = self.input.plan_fit(hw)
        x = self.input.fit(frame_bgr, self._fit)
        if self.rgb:
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
        return self.model.person_probability(x), self._fit

    def __call__(self, frame_bgr: np.ndarray, out_hw: tuple[int, int],
                 grey: np.ndarray | None = None) -> Segmentation:
        """Person probability at `out_hw` for this frame.

        `grey` (the frame in greyscale at `out_hw`) is only needed for reuse="shift".
        """
        run = self._last is None or self._last.shape != tuple(out_hw) or self._count % self.every == 0
        self._count += 1
        if not run:
            if self.reuse == "shift" and grey is not None and self._last_grey is not None:
                dx, dy = estimate_shift(self._last_grey, grey, self._last)
                return Segmentation(shift_map(self._last, dx, dy), False, 0.0, (dx, dy))
            return Segmentation(self._last, False, 0.0)
        t0 = time.perf_counter()
        prob, fit = self.model_probability(frame_bgr)
        ms = (time.perf_counter() - t0) * 1000.0
        prob = self.input.map_back(np.clip(prob, 0.0, 1.0), fit, tuple(out_hw))
        self._last = prob
        self._last_grey = grey
        self._count = 1
        return Segmentation(prob, True, ms)
