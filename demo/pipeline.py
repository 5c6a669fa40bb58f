"""One frame through the demo: segment → smooth → refine → feather → effect → composite.

`Pipeline.process(frame)` takes a BGR frame and returns the rendered frame with the
intermediate maps. Mask work happens at a reduced working size (longer side
`work_long_side`, 320 px by default): the model's map is only 256 px wide anyway, and the
fast guided filter restores full-resolution edges from the full-resolution guide.
Settings can be flipped between frames (the window's keys do).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from demo.effects import DEFAULT_STRENGTH, Effect, mask_view
from demo.postprocess import TemporalSmoother, fast_guided_alpha, upsampled_alpha
from demo.segmenter import Segmenter
from demo.stats import StageTimes
from mobile_seg.errors import ConfigError

REFINE_MODES = ("guided", "none")
DEFAULT_SMOOTHING = 0.6


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the output; CLI flags map onto these fields.

    Args:
        effect: blur | bokeh | replace | colour | mask.
        strength: blur strength (Gaussian sigma in frame pixels).
        smoothing: temporal smoothing in [0, 1); 0 = off.
        confidence_weighted: weight the smoothing by confidence (False: plain EMA, which
            ghosts behind moving people; kept for comparison).
        refine: guided | none.
        every: run the model on every Nth frame.
        reuse: hold | shift, for frames between model runs.
        resize: stretch | letterbox | crop (None: the model's metadata).
        work_long_side: longer side of the working size for mask post-processing.
        guided_radius: guided-filter box radius in working-size pixels.
        guided_eps: guided-filter regulariser (guide in [0, 1]; larger = smoother).
        wrap: light-wrap amount (0 = off).
    """

    effect: str = "blur"
    strength: float = DEFAULT_STRENGTH
    smoothing: float = DEFAULT_SMOOTHING
    confidence_weighted: bool = True
    refine: str = "guided"
    every: int = 1
    reuse: str = "hold"
    resize: str | None = None
    work_long_side: int = 320
    guided_radius: int = 2
    guided_eps: float = 1e-3
    wrap: float = 0.0

    def __post_init__(self):
        if self.refine not in REFINE_MODES:
            raise ConfigError(f"unknown --refine {self.refine!r}; expected one of {', '.join(REFINE_MODES)}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"--smoothing must be in [0, 1), got {self.smoothing}")
        if self.work_long_side < 16:
            raise ConfigError(f"working size must be >= 16 px, got {self.work_long_side}")


@dataclass
class FrameResult:
    output: np.ndarray  # rendered BGR frame
    alpha: np.ndarray  # float32 [H, W] in [0, 1], 1 = person
    prob: np.ndarray  # smoothed person probability at the working size
    inferred: bool
    model_ms: float


def working_size(frame_hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `long_side`, same aspect."""
    h, w = frame_hw
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


class Pipeline:
    """Stateful frame processor (temporal smoothing and --every reuse keep history)."""

    def __init__(self, model, settings: Settings = Settings(), background: np.ndarray | None = None):
        self.model = model
        self.settings = settings
        self.background = background
        self.segmenter = Segmenter(model, resize=settings.resize, every=settings.every, reuse=settings.reuse)
        self.smoother = TemporalSmoother(settings.smoothing, settings.confidence_weighted)
        self.effect = Effect(settings.effect, settings.strength, background, settings.wrap)
        self.smoothing_on = settings.smoothing > 0
        self.refine_on = settings.refine == "guided"
        self.mask_view = False
        self.last_model_ms = 0.0
        self.small_frame: np.ndarray | None = None  # the frame at the working size (last call)

    # --- toggles (window keys) ---------------------------------------------------------
    def set_effect(self, name: str) -> None:
        self.effect = Effect(name, self.settings.strength, self.background, self.effect.wrap)
        self.settings = replace(self.settings, effect=name)

    def next_effect(self) -> str:
        """Cycle blur → bokeh → colour → replace (if a background is loaded) → blur."""
        order = ["blur", "bokeh", "colour"] + (["replace"] if self.background is not None else [])
        current = self.effect.name
        name = order[(order.index(current) + 1) % len(order)] if current in order else order[0]
        self.set_effect(name)
        return name

    def toggle_smoothing(self) -> bool:
        self.smoothing_on = not self.smoothing_on
        if self.smoother.smoothing == 0.0 and self.smoothing_on:
            self.smoother = TemporalSmoother(DEFAULT_SMOOTHING, self.settings.confidence_weighted)
        self.smoother.reset()
        return self.smoothing_on

    def toggle_refine(self) -> bool:
        self.refine_on = not self.refine_on
        return self.refine_on

    def toggle_mask_view(self) -> bool:
        self.mask_view = not self.mask_view
        return self.mask_view

    def toggle_wrap(self) -> bool:
        self.effect.wrap = 0.0 if self.effect.wrap > 0 else 0.5
        return self.effect.wrap > 0

    # --- the frame ------------------------------------------------------------------------
    def alpha(self, frame: np.ndarray, times: StageTimes | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(alpha at frame size, smoothed probability at working size, model ran?)."""
        times = times or StageTimes()
        s = self.settings
        hw = frame.shape[:2]
        work = working_size(hw, s.work_long_side)
        t0 = time.perf_counter()
        # One reduced copy of the frame feeds the model, the small guide and the effects:
        # at 640×480 it is an exact 2× INTER_AREA reduction, OpenCV's fast path.
        small = frame if work == hw else cv2.resize(frame, (work[1], work[0]), interpolation=cv2.INTER_AREA)
        self.small_frame = small
        grey_small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        t1 = time.perf_counter()
        # The model sees the small copy unless it needs more pixels than that has (10 % spare).
        need = self.segmenter.scaled_size(hw)
        model_src = small if need[0] <= 1.1 * work[0] and need[1] <= 1.1 * work[1] else frame
        seg = self.segmenter(model_src, work, grey_small if s.reuse == "shift" else None)
        t2 = time.perf_counter()
        prob = self.smoother(seg.prob) if self.smoothing_on else seg.prob
        if self.refine_on:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            guide_small = grey_small.astype(np.float32) * np.float32(1.0 / 255.0)
            alpha = fast_guided_alpha(grey, guide_small, prob, s.guided_radius, s.guided_eps)
        else:
            alpha = upsampled_alpha(prob, hw)
        t3 = time.perf_counter()
        if seg.inferred:
            times.add("inference", seg.model_ms)
            self.last_model_ms = seg.model_ms
        # Mapping the model's map back to the working size counts as post-processing.
        rest = (t2 - t1) * 1000.0 - seg.model_ms
        times.add("postprocess", (t1 - t0) * 1000.0 + rest + (t3 - t2) * 1000.0)
        return alpha, prob, seg.inferred

    def process(self, frame: np.ndarray, times: StageTimes | None = None) -> FrameResult:
        times = times or StageTimes()
        alpha, prob, inferred = self.alpha(frame, times)
        with times.stage("compositing"):
            if self.mask_view and self.effect.name != "mask":
                output = mask_view(frame, alpha)
            else:
                output = self.effect.apply(frame, alpha, self.small_frame)
        return FrameResult(output, alpha, prob, inferred, self.last_model_ms if inferred else 0.0)
