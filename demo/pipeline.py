"""One frame through the demo: segment → smooth → subject → refine → feather → effect → composite.

`Pipeline.process(frame)` takes a BGR frame and returns the rendered frame with the
intermediate maps. Mask work happens at a reduced working size (longer side
`work_long_side`, 320 px by default): the model's map is only 256 px wide anyway, and the
fast guided filter restores full-resolution edges from the full-resolution guide.
Settings can be changed between frames (`Pipeline.update`: the window's keys and the
served page do). With `delay` N the frame shown is N frames old, composited with the
newest mask.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from demo.effects import DEFAULT_STRENGTH, Background, Effect, as_background, check_effect, mask_view
from demo.postprocess import TemporalSmoother, fast_guided_alpha, upsampled_alpha
from demo.segmenter import Segmentation, Segmenter
from demo.subject import check_subject, select_subject
from demo.stats import StageTimes
from mobile_seg.errors import ConfigError

REFINE_MODES = ("guided", "none")
DEFAULT_SMOOTHING = 0.6
DEFAULT_MOTION = 0.5
MAX_DELAY = 10
FEATHER_HALF_WIDTH = 0.2  # the alpha ramp spans threshold ± this (0.3–0.7 at 0.5)
# What can change while running (window keys, the served page); see Pipeline.update.
LIVE_SETTINGS = ("effect", "strength", "threshold", "smoothing", "motion", "refine", "subject",
                 "min_area", "background")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the output; CLI flags map onto these fields.

    Args:
        effect: blur | bokeh | replace | colour | mask.
        strength: blur strength (Gaussian sigma in frame pixels).
        threshold: person probability that separates person from background: the centre
            of the feathered alpha ramp and the cut for --subject's components.
        subject: all | largest | center (see demo.subject).
        min_area: components smaller than this fraction of the frame are dropped (0 = keep).
        smoothing: temporal smoothing in [0, 1); 0 = off.
        confidence_weighted: weight the smoothing by confidence (False: plain EMA, which
            ghosts behind moving people; kept for comparison).
        motion: motion-adaptive smoothing: disagreement with the smoothed map at which the
            new map is taken whole (0 = off; see TemporalSmoother).
        refine: guided | none.
        every: run the model on every Nth frame.
        reuse: hold | shift, for frames between model runs.
        resize: stretch | letterbox | crop (None: the model's metadata).
        delay: show each frame N frames late, with the mask of the newest frame, so that a
            mask that trails the person lines up with the picture.
        background: index of the replacement background (for effect replace).
        work_long_side: longer side of the working size for mask post-processing.
        guided_radius: guided-filter box radius in working-size pixels.
        guided_eps: guided-filter regulariser (guide in [0, 1]; larger = smoother).
        wrap: light-wrap amount (0 = off).
    """

    effect: str = "blur"
    strength: float = DEFAULT_STRENGTH
    threshold: float = 0.5
    subject: str = "all"
    min_area: float = 0.0
    smoothing: float = DEFAULT_SMOOTHING
    confidence_weighted: bool = True
    motion: float = DEFAULT_MOTION
    refine: str = "guided"
    every: int = 1
    reuse: str = "hold"
    resize: str | None = None
    delay: int = 0
    background: int = 0
    work_long_side: int = 320
    guided_radius: int = 2
    guided_eps: float = 1e-3
    wrap: float = 0.0

    def __post_init__(self):
        if self.refine not in REFINE_MODES:
            raise ConfigError(f"unknown --refine {self.refine!r}; expected one of {', '.join(REFINE_MODES)}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"--smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 <= self.motion <= 1.0:
            raise ConfigError(f"--motion must be in [0, 1] (0 = off), got {self.motion}")
        check_effect(self.effect, self.strength)
        check_subject(self.subject, self.threshold, self.min_area)
        if not 0 <= self.delay <= MAX_DELAY:
            raise ConfigError(f"--delay must be in [0, {MAX_DELAY}] frames, got {self.delay}")
        if self.work_long_side < 16:
            raise ConfigError(f"working size must be >= 16 px, got {self.work_long_side}")

    @property
    def feather(self) -> tuple[float, float]:
        """(low, high) of the probability → alpha ramp."""
        low = max(0.0, self.threshold - FEATHER_HALF_WIDTH)
        return low, min(1.0, self.threshold + FEATHER_HALF_WIDTH)


@dataclass
class Segmented:
    """A frame after stage 1 (`Pipeline.segment`): its reduced copies and the model's map."""

    frame: np.ndarray
    small: np.ndarray  # at the working size
    grey_small: np.ndarray
    seg: Segmentation
    prep_ms: float  # resizing and mapping back, without the model


@dataclass
class FrameResult:
    output: np.ndarray  # rendered BGR frame
    frame: np.ndarray  # the input frame it shows (with --delay N: N frames old)
    alpha: np.ndarray  # float32 [H, W] in [0, 1], 1 = person
    prob: np.ndarray  # smoothed person probability at the working size
    inferred: bool
    model_ms: float


def working_size(frame_hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `long_side`, same aspect."""
    h, w = frame_hw
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _backgrounds(background) -> list[Background]:
    if background is None:
        return []
    items = background if isinstance(background, (list, tuple)) else [background]
    return [as_background(b) for b in items]


class Pipeline:
    """Stateful frame processor (temporal smoothing, --every reuse and --delay keep history).

    Args:
        model: a loaded TFLiteModel with a segmentation output.
        settings: the initial settings.
        background: replacement background(s) for effect replace: a Background, a BGR
            image, or a list of them (`settings.background` picks one).
    """

    def __init__(self, model, settings: Settings = Settings(), background=None):
        self.model = model
        self.backgrounds = _backgrounds(background)
        if self.backgrounds and not 0 <= settings.background < len(self.backgrounds):
            raise ConfigError(f"background index {settings.background} out of range "
                              f"(0..{len(self.backgrounds) - 1})")
        self.settings = settings
        self.segmenter = Segmenter(model, resize=settings.resize, every=settings.every, reuse=settings.reuse)
        self.smoother = TemporalSmoother(settings.smoothing, settings.confidence_weighted, settings.motion)
        self.effect = Effect(settings.effect, settings.strength, self.background, settings.wrap)
        self.mask_view = False
        self.last_model_ms = 0.0
        self.shown: np.ndarray | None = None  # the frame the last alpha belongs to
        self.small_frame: np.ndarray | None = None  # the same at the working size
        self._history: deque = deque(maxlen=settings.delay + 1)
        self._smoothing_before_off = settings.smoothing or DEFAULT_SMOOTHING

    @property
    def background(self) -> Background | None:
        return self.backgrounds[self.settings.background] if self.backgrounds else None

    @property
    def smoothing_on(self) -> bool:
        return self.settings.smoothing > 0

    @property
    def refine_on(self) -> bool:
        return self.settings.refine == "guided"

    # --- live changes (window keys, the served page) ------------------------------------
    def update(self, changes: dict) -> dict:
        """Apply {setting: value} for names in LIVE_SETTINGS; returns `state()`.

        Validates everything first (ConfigError, nothing changed) so a bad request from the
        page cannot leave the pipeline half-updated.
        """
        unknown = sorted(set(changes) - set(LIVE_SETTINGS))
        if unknown:
            raise ConfigError(f"cannot change {', '.join(unknown)} while running; "
                              f"live settings: {', '.join(LIVE_SETTINGS)}")
        new = replace(self.settings, **changes)
        if new.effect == "replace" and not self.backgrounds:
            raise ConfigError("--effect replace needs --background IMAGE or VIDEO")
        if self.backgrounds and not 0 <= new.background < len(self.backgrounds):
            raise ConfigError(f"background must be in 0..{len(self.backgrounds) - 1}, got {new.background}")
        old, self.settings = self.settings, new
        if (new.smoothing, new.motion) != (old.smoothing, old.motion):
            if old.smoothing > 0 and new.smoothing == 0:
                self._smoothing_before_off = old.smoothing
            self.smoother = TemporalSmoother(new.smoothing, new.confidence_weighted, new.motion)
        if (new.effect, new.strength, new.background) != (old.effect, old.strength, old.background):
            self.effect = Effect(new.effect, new.strength, self.background, self.effect.wrap)
        return self.state()

    def state(self) -> dict:
        """The live settings and the choices the served page offers."""
        s = asdict(self.settings)
        return {**{k: s[k] for k in LIVE_SETTINGS}, "mask_view": self.mask_view,
                "backgrounds": [b.name for b in self.backgrounds]}

    def set_effect(self, name: str) -> None:
        self.update({"effect": name})

    def next_effect(self) -> str:
        """Cycle blur → bokeh → colour → replace (if a background is loaded) → blur."""
        order = ["blur", "bokeh", "colour"] + (["replace"] if self.backgrounds else [])
        current = self.effect.name
        name = order[(order.index(current) + 1) % len(order)] if current in order else order[0]
        self.set_effect(name)
        return name

    def toggle_smoothing(self) -> bool:
        self.update({"smoothing": 0.0 if self.smoothing_on else self._smoothing_before_off})
        return self.smoothing_on

    def toggle_refine(self) -> bool:
        self.update({"refine": "none" if self.refine_on else "guided"})
        return self.refine_on

    def toggle_mask_view(self) -> bool:
        self.mask_view = not self.mask_view
        return self.mask_view

    def toggle_wrap(self) -> bool:
        self.effect.wrap = 0.0 if self.effect.wrap > 0 else 0.5
        return self.effect.wrap > 0

    def close(self) -> None:
        """Stop background readers (video backgrounds)."""
        for b in self.backgrounds:
            b.close()

    # --- the frame ------------------------------------------------------------------------
    def segment(self, frame: np.ndarray) -> Segmented:
        """Stage 1 of a frame: the reduced copy and the model's map (or the reused one).

        Touches only the segmenter's state, so it may run one frame ahead in another
        thread (demo.app does: the model overlaps stage 2 of the previous frame); calls
        must come in frame order.
        """
        s = self.settings
        hw = frame.shape[:2]
        work = working_size(hw, s.work_long_side)
        t0 = time.perf_counter()
        # One reduced copy of the frame feeds the model, the small guide and the effects:
        # at 640×480 it is an exact 2× INTER_AREA reduction, OpenCV's fast path.
        small = frame if work == hw else cv2.resize(frame, (work[1], work[0]), interpolation=cv2.INTER_AREA)
        grey_small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        t1 = time.perf_counter()
        # The model sees the small copy unless it needs more pixels than that has (10 % spare).
        need = self.segmenter.scaled_size(hw)
        model_src = small if need[0] <= 1.1 * work[0] and need[1] <= 1.1 * work[1] else frame
        seg = self.segmenter(model_src, work, grey_small if s.reuse == "shift" else None)
        # Mapping the model's map back to the working size counts as post-processing.
        prep_ms = (time.perf_counter() - t0) * 1000.0 - seg.model_ms
        return Segmented(frame, small, grey_small, seg, prep_ms)

    def alpha(self, frame: np.ndarray | Segmented, times: StageTimes | None = None
              ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(alpha at frame size, smoothed probability at working size, model ran?).

        `frame`: a BGR frame, or its `segment()` result. The mask is the newest frame's;
        the alpha is refined on (and belongs to) the shown frame, `self.shown`: with
        --delay N the frame of N calls ago.
        """
        times = times or StageTimes()
        segmented = frame if isinstance(frame, Segmented) else self.segment(frame)
        frame, seg = segmented.frame, segmented.seg
        s = self.settings
        hw = frame.shape[:2]
        t0 = time.perf_counter()
        if self._history and self._history[-1][0].shape != frame.shape:
            self._history.clear()
        self._history.append((frame, segmented.small, segmented.grey_small))
        self.shown, self.small_frame, shown_grey_small = self._history[0]
        prob = self.smoother(seg.prob) if self.smoothing_on else seg.prob
        prob = select_subject(prob, s.subject, s.threshold, s.min_area)
        low, high = s.feather
        if self.refine_on:
            grey = cv2.cvtColor(self.shown, cv2.COLOR_BGR2GRAY)
            guide_small = shown_grey_small.astype(np.float32) * np.float32(1.0 / 255.0)
            alpha = fast_guided_alpha(grey, guide_small, prob, s.guided_radius, s.guided_eps, low, high)
        else:
            alpha = upsampled_alpha(prob, hw, low, high)
        if seg.inferred:
            times.add("inference", seg.model_ms)
            self.last_model_ms = seg.model_ms
        times.add("postprocess", segmented.prep_ms + (time.perf_counter() - t0) * 1000.0)
        return alpha, prob, seg.inferred

    def process(self, frame: np.ndarray | Segmented, times: StageTimes | None = None) -> FrameResult:
        """The rendered frame (`frame`: a BGR frame or its `segment()` result)."""
        times = times or StageTimes()
        alpha, prob, inferred = self.alpha(frame, times)
        shown = self.shown
        with times.stage("compositing"):
            if self.mask_view and self.effect.name != "mask":
                output = mask_view(shown, alpha)
            else:
                output = self.effect.apply(shown, alpha, self.small_frame)
        return FrameResult(output, shown, alpha, prob, inferred, self.last_model_ms if inferred else 0.0)
