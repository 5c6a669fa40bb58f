"""Where rendered frames go: a video or image file, a virtual camera, an MJPEG server.

Every sink has the same contract: `write(frame)` takes one BGR uint8 frame (the sink may
keep a reference, so the caller must not modify it afterwards), `finish()` completes the
output and returns the number of frames it holds (None: nothing was written), `abort()`
drops it. File outputs are written to a temporary file beside the target and renamed at
the end; a video is reopened and its frames counted first, so a finished run leaves a
playable file and a failed one leaves none. (The window lives in `demo.app`: its keys
drive the pipeline.)
"""
from __future__ import annotations

import os
import platform
import queue
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from mobile_seg.errors import DeviceError
from mobile_seg.io_utils import write_bytes_atomic

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LOOPBACK_HINT = ("sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=mobile-seg "
                 "(Debian/Ubuntu package v4l2loopback-dkms)")


def count_video_frames(path: str | os.PathLike) -> int:
    """Frames decodable from a video file (0 if it cannot be opened)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        return 0
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


class VideoSink:
    """Writes frames to a temp video beside `path` from a background thread (encoding
    overlaps the next frame's work); `finish()` verifies the file and renames it."""

    def __init__(self, path: str | os.PathLike, fps: float, queue_size: int = 8):
        self.path = Path(path)
        self.fps = fps
        self.fourcc = VIDEO_FOURCC[self.path.suffix.lower()]
        self.frames = 0
        self.encode_ms = 0.0  # time spent in VideoWriter.write (writer thread)
        self._writer = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real extension last: OpenCV picks the container from it.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise DeviceError(f"writing the video failed: {self._error}", self.path)
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc),
                                           self.fps, (w, h))
            if not self._writer.isOpened():
                self.abort()
                raise DeviceError(f"cannot write {self.fourcc} video here", self.path)
            self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
            self._thread.start()
        self._queue.put(frame)
        self.frames += 1

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain after a failure
            t0 = time.perf_counter()
            try:
                self._writer.write(frame)
            except Exception as e:  # surfaced by the next write() or finish()
                self._error = e
            self.encode_ms += (time.perf_counter() - t0) * 1000.0

    def _close_writer(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def finish(self) -> int | None:
        """Close, reopen and count frames, rename into place; None if nothing was written."""
        self._close_writer()
        if self._error is not None:
            self.abort()
            raise DeviceError(f"writing the video failed: {self._error}", self.path)
        if self.frames == 0:
            self.abort()
            return None
        readable = count_video_frames(self.tmp)
        if readable == 0:
            self.abort()
            raise DeviceError(f"the written video is not playable ({self.frames} frames written, "
                              f"none read back)", self.path)
        os.replace(self.tmp, self.path)
        return readable

    def abort(self) -> None:
        self._close_writer()
        self.tmp.unlink(missing_ok=True)


class ImageSink:
    """Keeps the latest frame; `finish()` encodes it and writes it atomically."""

    def __init__(self, path: str | os.PathLike, quality: int = 92):
        self.path = Path(path)
        self.quality = quality
        self.frames = 0
        self._last: np.ndarray | None = None

    def write(self, frame: np.ndarray) -> None:
        self._last = frame
        self.frames += 1

    def finish(self) -> int | None:
        if self._last is None:
            return None
        ext = self.path.suffix.lower()
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if ext in (".jpg", ".jpeg") else []
        ok, data = cv2.imencode(ext, self._last, params)
        if not ok:
            raise DeviceError("cannot encode the output image", self.path)
        write_bytes_atomic(self.path, data.tobytes())
        return 1

    def abort(self) -> None:
        self._last = None


def file_sink(path: str | os.PathLike, fps: float) -> VideoSink | ImageSink:
    """The sink for an --output path: a picture for image extensions, else a video."""
    return ImageSink(path) if Path(path).suffix.lower() in IMAGE_EXTENSIONS else VideoSink(path, fps)


# --- virtual camera -----------------------------------------------------------------------
def virtual_camera_setup_hint(device: str | None) -> str:
    """What to do when no virtual-camera backend is available, for this OS."""
    system = platform.system()
    if system == "Linux":
        if device:
            return f"{device} is not a v4l2loopback device; create one with: {LOOPBACK_HINT}"
        return (f"no v4l2loopback device (/dev/video*) found; create one with: {LOOPBACK_HINT}, "
                f"or pass --virtual-camera /dev/videoN")
    return ("no virtual camera found; install OBS Studio and start its Virtual Camera once "
            "(Tools > Start Virtual Camera), then run again")


class VirtualCameraSink:
    """Frames to a virtual webcam through pyvirtualcam (Linux: v4l2loopback; Windows and
    macOS: OBS Virtual Camera), as BGR: pyvirtualcam converts to the device's own pixel
    format (I420/YUYV) with libyuv.

    Args:
        size: (h, w) of the frames that will be written.
        fps: the frame rate announced to the device (the rate of the source).
        device: e.g. /dev/video10 (None: the first free loopback device).
        mirror: flip frames left-right (a selfie view; call apps often mirror themselves).
        backend: a pyvirtualcam backend name (None: every backend of this OS).
    """

    def __init__(self, size: tuple[int, int], fps: float, device: str | None = None,
                 mirror: bool = False, backend: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise DeviceError("--virtual-camera needs the pyvirtualcam package "
                              "(pip install pyvirtualcam==0.15.0; setup.sh installs it)") from None
        h, w = size
        self.mirror = mirror
        self.frames = 0
        try:
            self.camera = pyvirtualcam.Camera(w, h, fps, fmt=pyvirtualcam.PixelFormat.BGR,
                                              device=device or None, backend=backend)
        except (RuntimeError, ValueError, OSError) as e:
            detail = " ".join(str(e).split())
            known = ("No v4l2 loopback device found", "does not exist", "could not be queried", "not a v4l2 loopback")
            why = "" if any(k in detail for k in known) else f" (pyvirtualcam: {detail})"
            raise DeviceError(f"no virtual camera: {virtual_camera_setup_hint(device)}{why}") from None
        self.device = self.camera.device
        self.backend = self.camera.backend
        native = self.camera.native_fmt
        self.description = (f"{self.device} ({self.backend}, {w}x{h} @ {fps:g} fps, BGR"
                            f"{f' -> {native}' if native else ''}{', mirrored' if mirror else ''})")

    def write(self, frame: np.ndarray) -> None:
        self.camera.send(cv2.flip(frame, 1) if self.mirror else np.ascontiguousarray(frame))
        self.frames += 1

    def finish(self) -> int | None:
        self.camera.close()
        return self.frames or None

    def abort(self) -> None:
        self.camera.close()
