"""Frame sources: error paths, frame order, stale-frame dropping, unplugged cameras."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from demo.capture import ImageSource, open_camera, open_source, open_video
from mobile_seg.errors import ConfigError, DeviceError


class FakeCamera:
    """A cv2.VideoCapture stand-in: `frames` frames (pixel value = frame number), then
    read() fails (the camera was unplugged) or, with `hang`, blocks."""

    def __init__(self, index=0, frames=5, delay=0.0, opened=True, hang=False):
        self.frames, self.delay, self.opened, self.hang = frames, delay, opened, hang
        self.i = 0
        self.released = threading.Event()

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.i >= self.frames:
            if self.hang:
                self.released.wait(5.0)
            return False, None
        time.sleep(self.delay)
        frame = np.full((24, 32, 3), self.i % 256, np.uint8)
        self.i += 1
        return True, frame

    def release(self):
        self.released.set()


def test_missing_camera_suggests_video():
    with pytest.raises(DeviceError, match=r"no camera at index 97.*--video"):
        open_camera(97)
    with pytest.raises(DeviceError, match="--video"):
        open_camera(0, capture_factory=lambda i: FakeCamera(opened=False))


def test_camera_that_opens_but_gives_no_frame_is_an_error():
    with pytest.raises(DeviceError, match="gives no frames at index 0"):
        open_camera(0, capture_factory=lambda i: FakeCamera(frames=0))


def test_missing_and_unreadable_videos(tmp_path, shared_data):
    with pytest.raises(DeviceError, match="video not found"):
        open_video(tmp_path / "nope.mp4")
    with pytest.raises(DeviceError, match="directory"):
        open_video(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DeviceError, match="cannot open video|no readable frames"):
        open_video(bad)
    with pytest.raises(DeviceError, match="cannot open video|no readable frames"):
        open_video(shared_data / "MANIFEST.md")


def test_video_delivers_every_frame_in_order(shared_data):
    with open_video(shared_data / "videos" / "asl_again.mkv") as src:
        assert src.size == (480, 640) and src.fps == pytest.approx(30.0)
        indices = [f.index for f in src]
        assert src.end_reason == "end of video" and not src.lost
    assert indices == list(range(77))
    assert src.dropped == 0


def test_camera_drops_stale_frames_for_a_slow_consumer():
    cam = FakeCamera(frames=200, delay=0.001)
    src = open_camera(0, capture_factory=lambda i: cam)
    seen = []
    while (frame := src.read(timeout=2.0)) is not None:
        seen.append(frame.index)
        time.sleep(0.01)  # a slow model
    src.close()
    assert src.dropped > 0 and len(seen) < 200
    assert seen == sorted(seen)
    assert seen[-1] == 199  # the newest frame is always delivered


def test_unplugged_camera_ends_the_source_cleanly():
    cam = FakeCamera(frames=7)
    src = open_camera(3, capture_factory=lambda i: cam)
    frames = []
    while (frame := src.read(timeout=2.0)) is not None:
        frames.append(frame)
        time.sleep(0.005)
    assert src.lost and "camera 3 stopped delivering frames" in src.end_reason
    src.close()
    assert cam.released.is_set()
    assert frames and frames[-1].index == 6


def test_camera_that_hangs_is_treated_as_unplugged():
    cam = FakeCamera(frames=2, hang=True)
    src = open_camera(0, capture_factory=lambda i: cam, stall_s=0.3)
    t0 = time.perf_counter()
    while src.read() is not None:
        pass
    assert time.perf_counter() - t0 < 2.0
    assert src.lost and "no frame" in src.end_reason
    src.close()


def test_image_source(tmp_path, shared_data):
    path = shared_data / "portraits" / "JPEGImages" / "portrait_039.jpg"
    src = ImageSource(path, repeat=3)
    frames = list(src)
    assert len(frames) == 3 and all(f.image is frames[0].image for f in frames)
    with pytest.raises(DeviceError, match="image not found"):
        ImageSource(tmp_path / "x.png")
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(DeviceError, match="cannot read image"):
        ImageSource(tmp_path / "x.png")


def test_exactly_one_input():
    with pytest.raises(ConfigError, match="choose one input"):
        open_source()
    with pytest.raises(ConfigError, match="choose one input"):
        open_source(camera=0, video="x.mp4")
