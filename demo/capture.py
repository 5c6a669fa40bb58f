"""Frame sources for the demo: a camera, a video file or a still image.

Cameras and videos are read in their own thread so that decoding overlaps the
segmentation work and a slow model never stalls the camera. A camera keeps only the
newest frames (stale ones are dropped, so what you see is live); a video file keeps
every frame (the output video must not skip any). When a camera stops delivering
frames (unplugged), the reader ends and `read()` returns None with `end_reason` set, so
the loop can stop cleanly and finalise its output.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from mobile_seg.errors import ConfigError, DeviceError

# A camera that delivers nothing for this long is treated as unplugged.
CAMERA_STALL_S = 5.0


@dataclass
class Frame:
    """One captured frame: BGR uint8 pixels, its index in the source and when it arrived."""

    index: int
    image: np.ndarray
    captured_at: float  # time.perf_counter() when read() returned it to the reader
    read_ms: float  # time spent decoding / grabbing it


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting for room; False if `stop` is set meanwhile."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def stop_reader(q: queue.Queue, stop: threading.Event, thread: threading.Thread | None,
                timeout: float = 1.0) -> None:
    """Stop a reader thread that feeds `q`: set `stop`, empty the queue so a blocked put
    returns, and join it."""
    stop.set()
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()
    if thread is not None:
        thread.join(timeout=timeout)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own WARN/ERROR log lines (we raise one clear error instead)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        yield
    finally:
        cv2.setLogLevel(level)


class FrameSource:
    """Base class: `read()` returns the next Frame, or None at the end (see `end_reason`)."""

    kind = "source"

    def __init__(self, name: str, fps: float, size: tuple[int, int]):
        self.name = name
        self.fps = fps
        self.size = size  # (h, w)
        self.end_reason: str | None = None
        self.dropped = 0  # frames discarded because the consumer was slower than the source
        self.read_ms_total = 0.0
        self.frames_read = 0

    @property
    def lost(self) -> bool:
        """True when the source ended abnormally (a camera that stopped delivering frames)."""
        return False

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class ThreadedCapture(FrameSource):
    """A cv2.VideoCapture-like object read by a background thread into a small queue.

    Args:
        cap: anything with `read() -> (ok, frame)` and `release()`, already opened with
            a first frame available as `first`.
        drop_stale: keep only the newest `queue_size` frames (camera) instead of blocking
            the reader until the consumer catches up (video file).
        stall_s: a read that has not returned a frame after this long ends the source
            (None: wait forever; video files never stall).
    """

    def __init__(self, cap, first: np.ndarray, first_ms: float, *, name: str, kind: str,
                 fps: float, drop_stale: bool, queue_size: int = 2, stall_s: float | None = None):
        super().__init__(name, fps, first.shape[:2])
        self.kind = kind
        self._cap = cap
        self._drop_stale = drop_stale
        self._stall_s = stall_s
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._ended = threading.Event()  # set by the reader when it has queued its last frame
        self._lost = False
        self._next_index = 1
        self._record(first_ms)
        self._queue.put(Frame(0, first, time.perf_counter(), first_ms))
        self._thread = threading.Thread(target=self._reader, name=f"capture-{kind}", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> bool:
        return self._lost

    def _record(self, ms: float) -> None:
        self.read_ms_total += ms
        self.frames_read += 1

    def _put(self, item) -> bool:
        """Queue `item`; returns False if asked to stop meanwhile."""
        if self._drop_stale:
            while True:
                try:
                    self._queue.put_nowait(item)
                    return True
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self.dropped += 1
        return put_unless_stopped(self._queue, item, self._stop)

    def _reader(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                ms = (time.perf_counter() - t0) * 1000.0
                if self._stop.is_set():
                    break
                if not ok or image is None:
                    if self.kind == "camera":
                        self._lost = True
                        self.end_reason = (f"camera {self.name} stopped delivering frames after "
                                           f"{self._next_index} frames (unplugged?)")
                    else:
                        self.end_reason = "end of video"
                    break
                self._record(ms)
                if not self._put(Frame(self._next_index, image, time.perf_counter(), ms)):
                    break
                self._next_index += 1
        except Exception as e:  # a backend error mid-stream ends the source like an unplug
            self._lost = self.kind == "camera"
            self.end_reason = f"{self.kind} {self.name} failed: {e}"
        finally:
            self._ended.set()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame (for a camera: the newest), or None once the source has ended.

        `timeout` (default: the stall limit, none for videos) bounds the wait for a frame;
        running out of it ends a camera as unplugged.
        """
        limit = self._stall_s if timeout is None else timeout
        deadline = None if limit is None else time.perf_counter() + limit
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
            if self._ended.is_set() and self._queue.empty():
                self.end_reason = self.end_reason or "stopped"
                return None
            if deadline is not None and time.perf_counter() > deadline:
                self._lost = self.kind == "camera"
                self.end_reason = (f"{self.kind} {self.name} delivered no frame for {limit:g} s "
                                   f"(unplugged?)")
                self._stop.set()
                return None

    def close(self) -> None:
        # Unblock a reader waiting on a full queue, then let it finish its current read.
        stop_reader(self._queue, self._stop, self._thread)
        with contextlib.suppress(Exception):
            self._cap.release()
        if self.end_reason is None:
            self.end_reason = "stopped"


class ImageSource(FrameSource):
    """A still image, delivered `repeat` times (None: until the consumer stops)."""

    kind = "image"

    def __init__(self, path: str | os.PathLike, repeat: int | None = 1):
        path = Path(path)
        if not path.is_file():
            raise DeviceError("image not found", path)
        t0 = time.perf_counter()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        ms = (time.perf_counter() - t0) * 1000.0
        if image is None:
            raise DeviceError("cannot read image (not an image file OpenCV can decode)", path)
        super().__init__(str(path), 0.0, image.shape[:2])
        self.path = path
        self.image = image
        self._repeat = repeat
        self._index = 0
        self.read_ms_total = ms

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._repeat is not None and self._index >= self._repeat:
            self.end_reason = "end of image"
            return None
        frame = Frame(self._index, self.image, time.perf_counter(),
                      self.read_ms_total if self._index == 0 else 0.0)
        self._index += 1
        self.frames_read += 1
        return frame


def open_video(path: str | os.PathLike, *, queue_size: int = 4) -> ThreadedCapture:
    """Open a video file; raise DeviceError if it is missing or yields no frame."""
    path = Path(path)
    if not path.exists():
        raise DeviceError("video not found", path)
    if path.is_dir():
        raise DeviceError("is a directory, expected a video file", path)
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise DeviceError("cannot open video (unsupported or corrupt file)", path)
        t0 = time.perf_counter()
        ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise DeviceError("video has no readable frames", path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 240.0 else 30.0
    return ThreadedCapture(cap, first, (time.perf_counter() - t0) * 1000.0, name=str(path),
                           kind="video", fps=fps, drop_stale=False, queue_size=queue_size)


def open_camera(index: int, *, width: int | None = None, height: int | None = None,
                capture_factory: Callable[[int], object] | None = None,
                stall_s: float = CAMERA_STALL_S) -> ThreadedCapture:
    """Open camera `index`; raise DeviceError (suggesting --video) if there is none.

    `capture_factory` replaces cv2.VideoCapture (tests use a fake camera).
    """
    factory = capture_factory or cv2.VideoCapture
    with quiet_opencv():
        cap = factory(index)
        opened = cap.isOpened()
        if opened and width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        t0 = time.perf_counter()
        ok, first = cap.read() if opened else (False, None)
    if not opened or not ok or first is None:
        with contextlib.suppress(Exception):
            cap.release()
        what = "no camera" if not opened else "camera gives no frames"
        raise DeviceError(f"{what} at index {index}; pass --video FILE or --image FILE instead")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 240.0 else 30.0
    return ThreadedCapture(cap, first, (time.perf_counter() - t0) * 1000.0, name=str(index),
                           kind="camera", fps=fps, drop_stale=True, queue_size=1, stall_s=stall_s)


def open_source(*, camera: int | None = None, video: str | os.PathLike | None = None,
                image: str | os.PathLike | None = None, image_repeat: int | None = 1,
                capture_factory: Callable[[int], object] | None = None) -> FrameSource:
    """Open exactly one of camera / video / image."""
    given = [x is not None for x in (camera, video, image)]
    if sum(given) != 1:
        raise ConfigError("choose one input: --camera INDEX, --video FILE or --image FILE")
    if video is not None:
        return open_video(video)
    if image is not None:
        return ImageSource(image, repeat=image_repeat)
    return open_camera(int(camera), capture_factory=capture_factory)
