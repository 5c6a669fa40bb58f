"""Mask post-processing: temporal smoothing, edge refinement and feathered alpha.

- `TemporalSmoother`: an exponential moving average weighted by confidence. A pixel the
  model is sure about (p near 0 or 1) takes the new value at once, so a moving person
  leaves no ghost; an uncertain pixel (p near 0.5, i.e. the edges) keeps most of its
  history, so edges stop flickering. Optionally motion-adaptive: where the new map
  disagrees strongly with the smoothed one, the new value is taken at once.
- `guided_filter` (He et al., "Guided Image Filtering", ECCV 2010) from OpenCV box
  filters, with the frame as guide: the mask edge snaps to the image edge.
  `fast_guided_alpha` runs it at a reduced working size and applies the upsampled linear
  coefficients to the full-resolution guide (He & Sun, "Fast Guided Filter", 2015), which
  keeps full-resolution edges for a fraction of the cost.
- `feather`: a linear ramp from probability to alpha, so the edge is soft over a few
  pixels while the background and the person are exactly 0 and 1.
"""
from __future__ import annotations

import cv2
import numpy as np

# Probability → alpha ramp: below LOW is background (alpha 0), above HIGH is person (1).
FEATHER_LOW = 0.3
FEATHER_HIGH = 0.7


class TemporalSmoother:
    """Confidence-weighted, motion-adaptive EMA of probability maps.

    new_state = w * p + (1 - w) * state, with w = 1 - smoothing * (1 - |2p - 1|): the
    weight on the new frame is 1 for a confident pixel and 1 - smoothing at p = 0.5.
    With `motion` = D > 0 the weight rises further where the new map disagrees with the
    state (d = |p - state|): w += (1 - w) * m, m ramping from 0 at d = D/4 to 1 at d = D.
    Small disagreements (edge noise) stay smoothed; a large one (a moving arm) is taken
    at once, so stronger smoothing does not make the mask trail the person.

    Args:
        smoothing: in [0, 1); 0 turns smoothing off.
        weighted: False gives a plain EMA (w = 1 - smoothing everywhere), for comparison:
            it lags behind moving people (ghosts).
        motion: disagreement at which the new value is taken whole (0 = not adaptive).
    """

    def __init__(self, smoothing: float = 0.6, weighted: bool = True, motion: float = 0.0):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 <= motion <= 1.0:
            raise ValueError(f"motion must be in [0, 1], got {motion}")
        self.smoothing = float(smoothing)
        self.weighted = weighted
        self.motion = float(motion)
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None

    def weight(self, prob: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """Per-pixel weight on the new frame, in [1 - smoothing, 1]."""
        if not self.weighted:
            w = np.full(prob.shape, 1.0 - self.smoothing, np.float32)
        else:
            # (cv2.add/subtract/absdiff with a Python scalar take a slow path in OpenCV 4.12,
            # ~100x numpy's, so scalar arithmetic stays in numpy.)
            confidence = np.abs(prob - np.float32(0.5))  # = |2p - 1| / 2
            w = confidence * np.float32(2.0 * self.smoothing) + np.float32(1.0 - self.smoothing)
        if self.motion > 0.0 and state is not None:
            floor = 0.25 * self.motion
            m = (cv2.absdiff(prob, state) - np.float32(floor)) * np.float32(1.0 / (self.motion - floor))
            np.clip(m, 0.0, 1.0, out=m)
            w += (np.float32(1.0) - w) * m
        return w

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """The smoothed map (the smoother's state: do not modify it in place)."""
        prob = prob.astype(np.float32, copy=False)
        if self.smoothing == 0.0:
            return prob
        if self.state is None or self.state.shape != prob.shape:
            self.state = prob.copy()
            return self.state
        self.state = cv2.add(self.state, cv2.multiply(self.weight(prob, self.state),
                                                      cv2.subtract(prob, self.state)))
        return self.state


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    return cv2.boxFilter(x, cv2.CV_32F, (k, k), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Box-averaged linear coefficients (a, b) so that the output is a * guide + b.

    guide: float32 [h, w] in [0, 1] (grey frame); src: float32 [h, w].
    """
    mean_i = _box(guide, radius)
    mean_p = _box(src, radius)
    corr_ip = _box(cv2.multiply(guide, src), radius)
    corr_ii = _box(cv2.multiply(guide, guide), radius)
    var_i = cv2.subtract(corr_ii, cv2.multiply(mean_i, mean_i))
    cov_ip = cv2.subtract(corr_ip, cv2.multiply(mean_i, mean_p))
    a = cv2.divide(cov_ip, var_i + np.float32(eps))
    b = cv2.subtract(mean_p, cv2.multiply(a, mean_i))
    return _box(a, radius), _box(b, radius)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = 4, eps: float = 1e-3) -> np.ndarray:
    """Edge-preserving smoothing of `src` steered by `guide` (both float32 [h, w])."""
    a, b = guided_coefficients(guide, src, radius, eps)
    return cv2.add(cv2.multiply(a, guide), b)


def to_float_grey(image: np.ndarray) -> np.ndarray:
    """BGR or grey uint8 → float32 grey in [0, 1]."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return grey.astype(np.float32) * np.float32(1.0 / 255.0)


def feather(prob: np.ndarray, low: float = FEATHER_LOW, high: float = FEATHER_HIGH) -> np.ndarray:
    """Alpha in [0, 1]: 0 below `low`, 1 above `high`, linear in between."""
    alpha = (prob.astype(np.float32, copy=False) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def fast_guided_alpha(guide_full: np.ndarray, guide_small: np.ndarray, prob_small: np.ndarray,
                      radius: int = 4, eps: float = 1e-3, low: float = FEATHER_LOW,
                      high: float = FEATHER_HIGH) -> np.ndarray:
    """Feathered alpha at full resolution from a guided filter run at the small size.

    The feather ramp is linear, so it is folded into the coefficients before upsampling:
    full-resolution work is two resizes, one multiply-add and a clip.

    Args:
        guide_full: grey [H, W], float32 in [0, 1] or uint8 (scaled by 1/255 on the fly).
        guide_small: float32 grey in [0, 1] at the working size [h, w].
        prob_small: person probability at the working size.
    """
    a, b = guided_coefficients(guide_small, prob_small, radius, eps)
    scale = 1.0 / (high - low)
    a *= np.float32(scale)
    b = (b - np.float32(low)) * np.float32(scale)
    h, w = guide_full.shape[:2]
    if a.shape[:2] != (h, w):
        a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
    if guide_full.dtype == np.uint8:
        alpha = cv2.add(cv2.multiply(a, guide_full, scale=1.0 / 255.0, dtype=cv2.CV_32F), b)
    else:
        alpha = cv2.add(cv2.multiply(a, guide_full), b)
    return np.clip(alpha, 0.0, 1.0, out=alpha)


def upsampled_alpha(prob_small: np.ndarray, out_hw: tuple[int, int], low: float = FEATHER_LOW,
                    high: float = FEATHER_HIGH) -> np.ndarray:
    """Feathered alpha without refinement: bilinear upsampling of the probability."""
    h, w = out_hw
    prob = prob_small if prob_small.shape[:2] == (h, w) else cv2.resize(
        prob_small, (w, h), interpolation=cv2.INTER_LINEAR)
    return feather(prob, low, high)
