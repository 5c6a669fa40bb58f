"""The demo's frame loop: source → Pipeline → window and/or sinks, with stats.

`run_demo(options)` is what `mobile-seg demo` calls. Window mode shows the live result
with an FPS / model-latency overlay and keys (see KEYS); the sinks (demo.sinks,
demo.serve) write `--output`, feed a virtual camera, or serve an MJPEG stream with a
control page whose changes are applied between frames. File outputs are written to a
temporary file and renamed at the end, so a finished run leaves a playable file and a
failed run leaves none. A camera that stops
delivering frames ends the loop cleanly: the output is finalised and the result says so
(`lost=True`), and the CLI then reports it as an error.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from demo.capture import FrameSource, open_source, put_unless_stopped, stop_reader
from demo.pipeline import Pipeline, Settings
from demo.sinks import (IMAGE_EXTENSIONS, VIDEO_FOURCC, VideoSink, VirtualCameraSink, count_video_frames,
                        file_sink)
from demo.stats import StageTimes
from mobile_seg.errors import ConfigError, DeviceError, ModelFileError

__all__ = ["DemoOptions", "DemoResult", "run_demo", "format_result", "count_video_frames"]

WINDOW = "mobile-seg demo"
LIVE_IMAGE_FPS = 30.0  # a still image served or sent to a virtual camera repeats at this rate
KEYS = {
    "e": "next effect (blur, bokeh, colour, replace)",
    "s": "temporal smoothing on/off",
    "r": "guided-filter refinement on/off",
    "m": "mask view on/off",
    "l": "light wrap on/off",
    "o": "overlay on/off",
    "q": "quit (also Esc)",
}


@dataclass
class DemoOptions:
    """What `mobile-seg demo` was asked to do (one of camera / video / image).

    `window` None means: a window unless the result already goes somewhere a person sees
    or keeps it (an image written to --output, --serve, --virtual-camera).
    `background` is one path or several (the served page switches between them).
    `virtual_camera` is a device path, or "" for the first free device.
    """

    camera: int | None = None
    video: str | None = None
    image: str | None = None
    model: str | None = None
    output: str | None = None
    background: str | list[str] | None = None
    window: bool | None = None
    max_frames: int | None = None
    threads: int | None = None
    side_by_side: bool = False
    serve: str | None = None
    virtual_camera: str | None = None
    mirror: bool = False
    virtual_camera_backend: str | None = None  # a pyvirtualcam backend name (tests)
    settings: Settings = field(default_factory=Settings)

    def wants_window(self) -> bool:
        if self.window is not None:
            return self.window
        return not (self.serve is not None or self.virtual_camera is not None
                    or (self.image is not None and self.output is not None))


@dataclass
class DemoResult:
    input: str
    input_kind: str
    frame_size: tuple[int, int]
    model: str
    frames: int
    end_reason: str
    lost: bool
    output: str | None
    output_frames: int | None
    stats: dict
    settings: dict
    source_dropped: int = 0
    served: str | None = None  # the --serve URL
    virtual_camera: str | None = None  # the device frames went to

    def to_dict(self) -> dict:
        return asdict(self)


# --- process setup ------------------------------------------------------------------------
_ALLOCATOR_TUNED = False


def tune_allocator() -> bool:
    """Keep freed frame-sized buffers in the heap instead of returning them to the OS.

    Every frame allocates a few dozen arrays of 0.3–1.2 MB. glibc serves those with mmap
    or trims them off the heap when freed, so each frame page-faults ~800 KB back in: on
    this VM that was ~200 faults and up to 5 ms per frame (the fast guided filter went from
    1.5 to 6.7 ms). Raising the mmap and trim thresholds stops the churn. No-op off glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or not sys.platform.startswith("linux"):
        return _ALLOCATOR_TUNED
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 128 << 20))
    except (OSError, AttributeError):
        _ALLOCATOR_TUNED = False
    return _ALLOCATOR_TUNED


# --- model --------------------------------------------------------------------------------
# Frames at least this wide (width / height: 16:9 cameras and video, not 4:3) get the
# shipped "landscape" model when no --model is given: a square input would squash them.
WIDE_FRAME = 1.5


def resolve_model_path(model: str | None, frame_size: tuple[int, int] | None = None) -> Path:
    """--model, else the shipped model for the frame's shape (`frame_size` (h, w)):
    "landscape" for frames WIDE_FRAME or wider when it is shipped, else "default";
    ModelFileError if there is none."""
    from mobile_seg.shipped import model_path
    if model:
        named = model_path(model) if not Path(model).exists() else None
        return named or Path(model)  # a shipped model's name (e.g. "landscape") or a file
    shipped = None
    if frame_size is not None and frame_size[1] >= WIDE_FRAME * frame_size[0]:
        shipped = model_path("landscape")
    shipped = shipped or model_path()
    if shipped is not None:
        return shipped
    raise ModelFileError("no model is shipped with the package yet; pass --model PATH "
                         "(e.g. --model ../shared/data/models/selfie_segmentation.tflite)")


def load_model(path: str | os.PathLike, threads: int | None = None):
    """A TFLiteModel whose output is a segmentation map (ModelFileError otherwise)."""
    from mobile_seg.tflite_model import TFLiteModel

    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    model = TFLiteModel(path, num_threads=threads)
    model.check_segmentation_output()
    return model


# --- outputs ------------------------------------------------------------------------------
def check_output_path(output: str | None, input_kind: str) -> None:
    """Reject an output whose type does not fit the input, before any work is done.

    Images give images; cameras and videos give videos, or a picture of the last frame.
    """
    if output is None:
        return
    ext = Path(output).suffix.lower()
    allowed = IMAGE_EXTENSIONS if input_kind == "image" else tuple(VIDEO_FOURCC) + IMAGE_EXTENSIONS
    if ext not in allowed:
        raise ConfigError(f"--output for a{'n' if input_kind == 'image' else ''} {input_kind} input must end "
                          f"in {', '.join(allowed)}", output)
    if Path(output).is_dir():
        raise ConfigError("--output is a directory", output)
    from mobile_seg.io_utils import check_output_path
    check_output_path(output, "file")


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The input and the result next to each other (before | after)."""
    return np.hstack([before, after])


# --- window -------------------------------------------------------------------------------
def check_display() -> None:
    """Raise DeviceError when no window can be opened: OpenCV's Qt backend would abort the
    whole process (SIGABRT) instead of raising."""
    if not sys.platform.startswith("linux") or os.environ.get("WAYLAND_DISPLAY"):
        return
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise DeviceError("no display to open a window on (DISPLAY is not set); "
                          "use --no-window with --output FILE")
    match = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
    if match and not Path(f"/tmp/.X11-unix/X{match.group(1)}").exists():
        raise DeviceError(f"cannot open a window: no X server on display {display}; "
                          "use --no-window with --output FILE")


def handle_key(key: int, pipeline: Pipeline, state: dict) -> str | None:
    """Apply a window key; returns 'quit', a short status message, or None."""
    if key < 0:
        return None
    ch = chr(key & 0xFF).lower()
    if ch == "q" or key & 0xFF == 27:
        return "quit"
    if ch == "e":
        return f"effect: {pipeline.next_effect()}"
    if ch == "s":
        return f"smoothing: {'on' if pipeline.toggle_smoothing() else 'off'}"
    if ch == "r":
        return f"refine: {'guided' if pipeline.toggle_refine() else 'none'}"
    if ch == "m":
        return f"mask view: {'on' if pipeline.toggle_mask_view() else 'off'}"
    if ch == "l":
        return f"light wrap: {'on' if pipeline.toggle_wrap() else 'off'}"
    if ch == "o":
        state["overlay"] = not state.get("overlay", True)
        return f"overlay: {'on' if state['overlay'] else 'off'}"
    return None


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """`image` with `lines` of text in a dark box at the top left."""
    out = image.copy()
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    sizes = [cv2.getTextSize(t, font, scale, thick)[0] for t in lines]
    w = max(s[0] for s in sizes) + 12
    h = 18 * len(lines) + 6
    roi = out[:h, :w]
    roi[:] = cv2.convertScaleAbs(roi, alpha=0.35)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, 17 + 18 * i), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


# --- the loop -----------------------------------------------------------------------------
class _Stop:
    """SIGINT/SIGTERM set a flag: the loop then stops cleanly and finalises its output."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_demo(options: DemoOptions, *, capture_factory: Callable[[int], object] | None = None,
             log: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo; see the module docstring. Raises MobileSegError for user mistakes.

    `log` receives the lines a user needs while it runs (the served URL, the virtual
    camera in use).
    """
    o = options
    log = log or (lambda line: None)
    kinds = [k for k, v in (("camera", o.camera), ("video", o.video), ("image", o.image)) if v is not None]
    if len(kinds) != 1:
        raise ConfigError("choose one input: --camera INDEX, --video FILE or --image FILE")
    input_kind = kinds[0]
    check_output_path(o.output, input_kind)
    window = o.wants_window()
    live = window or o.serve is not None or o.virtual_camera is not None
    if not live and o.output is None:
        raise ConfigError("--no-window needs --output FILE, --serve or --virtual-camera "
                          "(otherwise nothing would be shown or written)")
    if o.max_frames is not None and o.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {o.max_frames}")
    address = None
    if o.serve is not None:
        from demo.serve import parse_address
        address = parse_address(o.serve)
    if window:
        check_display()
    tune_allocator()
    if o.model:  # a bad --model fails before the camera opens
        model_path = resolve_model_path(o.model)
        model = load_model(model_path, o.threads)
    backgrounds = []
    if o.background:
        from demo.effects import load_background
        paths = [o.background] if isinstance(o.background, (str, os.PathLike)) else list(o.background)
        backgrounds = [load_background(p) for p in paths]

    # A still image repeats while someone watches (window, stream, virtual camera).
    source = open_source(camera=o.camera, video=o.video, image=o.image, image_repeat=None if live else 1,
                         capture_factory=capture_factory)
    try:
        if not o.model:  # the shipped model that fits the frame's shape
            model_path = resolve_model_path(None, source.size)
            model = load_model(model_path, o.threads)
        pipeline = Pipeline(model, o.settings, backgrounds)
    except BaseException:
        source.close()
        raise
    fps = source.fps or LIVE_IMAGE_FPS
    sinks: list = []
    times = StageTimes()
    end_reason = "stopped"
    served = vcam = None
    controls = None
    try:
        if o.output is not None:
            sinks.append(file_sink(o.output, source.fps))
        if o.virtual_camera is not None:
            h, w = source.size
            cam = VirtualCameraSink((h, 2 * w if o.side_by_side else w), fps, o.virtual_camera or None,
                                    o.mirror, o.virtual_camera_backend)
            sinks.append(cam)
            vcam = cam.device
            log(f"virtual camera: {cam.description}")
        if address is not None:
            from demo.serve import Controls, MjpegServer
            controls = Controls()
            controls.state = pipeline.state()
            server = MjpegServer(address, controls)
            sinks.append(server)
            served = server.url
            log(f"serving {server.url} (stream: {server.url}stream.mjpg)")
        # Live outputs of a file or an image play at the source's rate, not as fast as possible.
        period = 1.0 / fps if live and source.kind != "camera" else 0.0
        ahead = SegmentAhead(source, pipeline)
        try:
            end_reason = _loop(ahead, pipeline, sinks, times, o, window, period, controls)
        finally:
            ahead.close()
        output_frames = sinks[0].finish() if o.output is not None else None
        for sink in sinks[1:] if o.output is not None else sinks:
            sink.finish()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        source.close()
        pipeline.close()
        if window:
            cv2.destroyAllWindows()
            cv2.waitKey(1)
    # Work done by the reader and writer threads, per frame (it overlaps the main loop).
    if source.read_ms_total and source.frames_read:
        times.add("capture", source.read_ms_total * times.frames / source.frames_read, count=0)
    video_sinks = [s for s in sinks if isinstance(s, VideoSink) and s.frames]
    if video_sinks:
        times.add("encode", video_sinks[0].encode_ms * times.frames / video_sinks[0].frames, count=0)
    h, w = source.size
    return DemoResult(
        input=source.name, input_kind=input_kind, frame_size=(h, w), model=str(model_path),
        frames=times.frames, end_reason=end_reason, lost=source.lost,
        output=str(o.output) if o.output is not None and output_frames else None,
        output_frames=output_frames, stats=times.summary(), settings=asdict(pipeline.settings),
        source_dropped=source.dropped, served=served, virtual_camera=vcam)


class SegmentAhead:
    """Reads the source and runs stage 1 (`Pipeline.segment`: resize + model) in a worker
    thread, one frame ahead of the loop: the model (which releases the GIL) overlaps the
    previous frame's post-processing, compositing and output. Frames stay paired with
    their own masks; `read()` returns (Frame, Segmented), or None at the end."""

    def __init__(self, source: FrameSource, pipeline: Pipeline):
        self.source = source
        self._pipeline = pipeline
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segment-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                put_unless_stopped(self._queue, (frame, self._pipeline.segment(frame.image)), self._stop)
        except BaseException as e:  # re-raised in the loop's thread by read()
            self._error = e
        put_unless_stopped(self._queue, None, self._stop)

    def read(self):
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # stay at the end for later reads
            if self._error is not None:
                raise self._error
        return item

    def close(self) -> None:
        stop_reader(self._queue, self._stop, self._thread, timeout=5.0)


def _loop(ahead: SegmentAhead, pipeline: Pipeline, sinks: list, times: StageTimes, o: DemoOptions,
          window: bool, period: float, controls=None) -> str:
    """Process frames until the source ends, --max-frames, a quit key or a signal.

    `period` > 0 paces the loop (seconds per frame); `controls` brings the served page's
    setting changes in between frames.
    """
    state = {"overlay": True, "message": "", "message_until": 0.0}
    intervals: deque[float] = deque(maxlen=30)
    last_shown = None
    next_due = time.perf_counter()
    if window:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.moveWindow(WINDOW, 0, 0)
    with _Stop() as stop:
        times.start()
        while True:
            if stop.requested:
                return "interrupted"
            if o.max_frames is not None and times.frames >= o.max_frames:
                return f"--max-frames {o.max_frames} reached"
            if controls is not None:
                controls.apply_pending(pipeline.update)
            if period and not window:  # (a window paces itself with waitKey)
                next_due = max(next_due + period, time.perf_counter())
                time.sleep(max(0.0, next_due - time.perf_counter()))
            t0 = time.perf_counter()
            item = ahead.read()
            times.add("wait", (time.perf_counter() - t0) * 1000.0)
            if item is None:
                return ahead.source.end_reason or "end of input"
            result = pipeline.process(item[1], times)
            rendered = side_by_side(result.frame, result.output) if o.side_by_side else result.output
            if sinks:
                with times.stage("output"):
                    for sink in sinks:
                        sink.write(rendered)
            if window:
                with times.stage("display"):
                    now = time.perf_counter()
                    if last_shown is not None:
                        intervals.append(now - last_shown)
                    fps = len(intervals) / sum(intervals) if intervals else 0.0
                    shown = rendered
                    if state["overlay"]:
                        shown = draw_overlay(shown, _overlay_lines(pipeline, fps, state, now))
                    cv2.imshow(WINDOW, shown)
                    delay = 1
                    if period and last_shown is not None:  # play videos at their own rate
                        delay = max(1, int((period - (time.perf_counter() - last_shown)) * 1000))
                    last_shown = now
                    key = cv2.waitKey(delay)
                    message = handle_key(key, pipeline, state)
                    if message == "quit":
                        times.frame_done(result.inferred)
                        return "quit key"
                    if message:
                        state["message"], state["message_until"] = message, now + 2.0
                    if controls is not None:
                        controls.state = pipeline.state()
                    if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                        times.frame_done(result.inferred)
                        return "window closed"
            times.frame_done(result.inferred)


def _overlay_lines(pipeline: Pipeline, fps: float, state: dict, now: float) -> list[str]:
    effect = "mask" if pipeline.mask_view else pipeline.effect.name
    lines = [f"{fps:.1f} FPS | model {pipeline.last_model_ms:.1f} ms | {effect}",
             f"smooth {'on' if pipeline.smoothing_on else 'off'} | "
             f"refine {'guided' if pipeline.refine_on else 'none'}"]
    if now < state.get("message_until", 0.0):
        lines.append(state["message"])
    else:
        lines.append("keys: e s r m l o, q quit")
    return lines


def format_result(result: DemoResult) -> list[str]:
    """Human-readable summary lines (the stats table is printed separately)."""
    h, w = result.frame_size
    lines = [f"input: {result.input_kind} {result.input} ({w}x{h}); model: {result.model}",
             f"processed {result.frames} frame{'' if result.frames == 1 else 's'} ({result.end_reason})"]
    if result.output and Path(result.output).suffix.lower() in VIDEO_FOURCC:
        lines.append(f"wrote {result.output}: reopened, {result.output_frames} frames read back")
    elif result.output:
        lines.append(f"wrote {result.output}")
    if result.served:
        lines.append(f"served {result.served} (stream stopped)")
    if result.virtual_camera:
        lines.append(f"virtual camera {result.virtual_camera}: {result.frames} frames sent")
    if result.source_dropped:
        lines.append(f"dropped {result.source_dropped} stale camera frames")
    return lines
