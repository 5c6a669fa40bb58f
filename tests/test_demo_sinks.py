"""Frame sinks: the virtual camera through pyvirtualcam up to the device boundary (a
recording backend registered with pyvirtualcam stands in for v4l2loopback/OBS), the
missing-backend error on this machine, and the sink contract."""
from __future__ import annotations

import glob
import platform

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from demo.app import DemoOptions, run_demo
from demo.sinks import VirtualCameraSink
from mobile_seg.cli import main
from mobile_seg.errors import DeviceError

pyvirtualcam = pytest.importorskip("pyvirtualcam")
NO_LOOPBACK = platform.system() == "Linux" and not glob.glob("/dev/video*")


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent (the device side of the boundary)."""

    opened: list["RecordingBackend"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.name = device or "/dev/video-test"
        self.frames: list[np.ndarray] = []
        self.closed = False
        RecordingBackend.opened.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self.name

    def native_fourcc(self):
        return None


@pytest.fixture
def recording_backend():
    RecordingBackend.opened.clear()
    pyvirtualcam.register_backend("mobile-seg-test", RecordingBackend)
    yield RecordingBackend.opened
    pyvirtualcam.camera.BACKENDS.pop("mobile-seg-test", None)


@pytest.fixture(scope="module")
def model_path(shared_data):
    return shared_data / "models" / "selfie_segmentation.tflite"


def test_virtual_camera_gets_the_rendered_frames_as_bgr(recording_backend, shared_data, model_path, tmp_path):
    """Same run to a virtual camera (mirrored) and a PNG of the last frame: the device
    receives exactly the rendered frame, flipped, as packed BGR at the video's size and rate."""
    out = tmp_path / "last.png"
    result = run_demo(DemoOptions(video=str(shared_data / "videos" / "asl_again.mkv"), model=str(model_path),
                                  output=str(out), virtual_camera="", mirror=True, max_frames=4,
                                  virtual_camera_backend="mobile-seg-test"))
    (cam,) = recording_backend
    assert result.virtual_camera == "/dev/video-test" and result.frames == 4
    assert (cam.width, cam.height, cam.fps) == (640, 480, 30.0)
    assert cam.fourcc == pyvirtualcam.util.encode_fourcc("24BG")  # BGR: no conversion on our side
    assert len(cam.frames) == 4 and cam.closed
    last = cv2.imread(str(out))
    np.testing.assert_array_equal(cam.frames[-1].reshape(480, 640, 3), cv2.flip(last, 1))


def test_virtual_camera_side_by_side_doubles_the_width(recording_backend, shared_data, model_path):
    run_demo(DemoOptions(image=str(shared_data / "portraits" / "JPEGImages" / "portrait_142.jpg"),
                         model=str(model_path), virtual_camera="/dev/video42", side_by_side=True, max_frames=2,
                         virtual_camera_backend="mobile-seg-test"))
    (cam,) = recording_backend
    assert (cam.width, cam.height, cam.name) == (960, 640, "/dev/video42")
    assert cam.fps == 30.0  # a still image is sent at 30 fps


def test_virtual_camera_sink_closes_on_abort(recording_backend):
    sink = VirtualCameraSink((48, 64), 15.0, backend="mobile-seg-test")
    sink.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="unexpected frame shape"):
        sink.write(np.zeros((48, 32, 3), np.uint8))  # pyvirtualcam checks the size it was opened with
    sink.abort()
    assert recording_backend[0].closed and len(recording_backend[0].frames) == 1


@pytest.mark.skipif(not NO_LOOPBACK, reason="this machine has a /dev/video* device")
def test_missing_backend_is_one_line_with_the_setup_command(shared_data, model_path, tmp_path):
    res = CliRunner().invoke(main, ["demo", "--video", str(shared_data / "videos" / "asl_again.mkv"),
                                    "--virtual-camera", "--model", str(model_path),
                                    "--output", str(tmp_path / "o.mp4")])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: no virtual camera: no v4l2loopback device (/dev/video*) found")
    assert "modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=mobile-seg" in lines[0]
    assert list(tmp_path.iterdir()) == []  # the output started before the camera is removed


@pytest.mark.skipif(not NO_LOOPBACK, reason="this machine has a /dev/video* device")
def test_missing_device_is_named(shared_data, model_path):
    with pytest.raises(DeviceError, match="/dev/video63 is not a v4l2loopback device"):
        VirtualCameraSink((480, 640), 30.0, device="/dev/video63")
