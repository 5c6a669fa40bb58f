"""Window mode under a virtual X server: the live view shows the person sharp, the
background blurred. Starts a private `Xvfb`, runs `mobile-seg demo --image ...` as
a subprocess, screenshots the root window with ImageMagick's `import`, and compares
sharpness (Laplacian variance) region by region with the original picture."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from demo.app import WINDOW

XVFB = shutil.which("Xvfb")
IMPORT = shutil.which("import")
XWININFO = shutil.which("xwininfo")
pytestmark = pytest.mark.skipif(
    not (XVFB and IMPORT and XWININFO),
    reason="window-mode test needs Xvfb, ImageMagick's import and xwininfo (setup.sh installs "
           "xvfb, imagemagick and x11-utils with apt)")

PORTRAIT = "portrait_142"  # 480×640 (w×h), full body in front of a brick wall


@pytest.fixture
def xvfb():
    """A private X server; Xvfb picks a free display number itself (-displayfd), so
    parallel runs never share one."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([XVFB, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp", "-br"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    number = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while not number.endswith(b"\n"):
            chunk = pipe.read(16)  # returns b"" if Xvfb exits without reporting
            if not chunk:
                break
            number += chunk
    if not number.strip().isdigit():
        proc.kill()
        pytest.fail(f"Xvfb did not report a display number (exit code {proc.poll()})")
    env = dict(os.environ, DISPLAY=f":{int(number)}")
    deadline = time.time() + 15
    while subprocess.run([XWININFO, "-root"], env=env, capture_output=True).returncode != 0:
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"Xvfb on {env['DISPLAY']} does not accept connections")
        time.sleep(0.1)
    yield env
    proc.terminate()
    proc.wait(timeout=5)


def _window_geometry(env) -> tuple[int, int, int, int] | None:
    res = subprocess.run([XWININFO, "-name", WINDOW], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return None
    fields = {}
    for line in res.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        fields[key] = value.strip()
    try:
        return (int(fields["Absolute upper-left X"]), int(fields["Absolute upper-left Y"]),
                int(fields["Width"]), int(fields["Height"]))
    except (KeyError, ValueError):
        return None


def _lap_var(image, region) -> float:
    lap = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    return float(lap[region].var())


def _show_and_capture(env, image_path, model, size, shot):
    """Run the demo's window on `image_path`; return (view of the window or None, returncode,
    stdout, stderr) once the window shows a picture (or after 30 s), stopped with SIGINT."""
    h, w = size
    cmd = [sys.executable, "-m", "mobile_seg.cli", "demo", "--image", str(image_path), "--model", str(model),
           "--max-frames", "3000", "--stats"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    view = None
    try:
        deadline = time.time() + 30
        geometry = None
        while time.time() < deadline and proc.poll() is None:
            geometry = _window_geometry(env)
            if geometry and geometry[2:] == (w, h):
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"demo exited early: {proc.communicate()}"
        assert geometry and geometry[2:] == (w, h), f"window not found or wrong size: {geometry}"
        # Screenshot once the window shows the picture (Qt paints during the demo's waitKey;
        # a busy machine can delay that), after a few frames (smoothing settles on a still).
        x, y = geometry[:2]
        deadline = time.time() + 30
        while time.time() < deadline:
            time.sleep(1.0)
            subprocess.run([IMPORT, "-window", "root", str(shot)], env=env, check=True, timeout=30)
            view = cv2.imread(str(shot))[y:y + h, x:x + w]
            if view.shape == (h, w, 3) and view[h // 2:].std() > 10:
                break
            if proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # the demo stops cleanly on SIGINT
        out, err = proc.communicate(timeout=30)
    return view, proc.returncode, out, err


def test_window_shows_blurred_background_and_sharp_person(xvfb, tmp_path, shared_data):
    image_path = shared_data / "portraits" / "JPEGImages" / f"{PORTRAIT}.jpg"
    mask = np.array(Image.open(shared_data / "portraits" / "SegmentationClass" / f"{PORTRAIT}.png")) == 1
    original = cv2.imread(str(image_path))
    h, w = original.shape[:2]
    model = shared_data / "models" / "selfie_segmentation.tflite"
    # OpenCV's Qt window under Xvfb now and then stays black for good (reproduced with a
    # 10-line cv2-only script, about 1 run in 10 under load): a fresh window gets up to
    # three tries; what it shows is then judged strictly.
    for _attempt in range(3):
        view, code, out, err = _show_and_capture(xvfb, image_path, model, (h, w), tmp_path / "screen.png")
        assert code == 0, err
        if view is not None and view[h // 2:].std() > 10:
            break
    assert view is not None and view[h // 2:].std() > 10, f"window stayed blank; demo said: {out} {err}"
    assert "(interrupted)" in out and "end-to-end:" in out

    assert view is not None and view.shape == original.shape
    # The overlay box (FPS, settings, keys) sits in the top-left corner: leave the top rows out.
    k = np.ones((31, 31), np.uint8)
    person = cv2.erode(mask.astype(np.uint8), k) > 0
    background = cv2.erode((~mask).astype(np.uint8), k) > 0
    person[:70] = background[:70] = False
    bg_before, bg_after = _lap_var(original, background), _lap_var(view, background)
    fg_before, fg_after = _lap_var(original, person), _lap_var(view, person)
    assert bg_after < 0.1 * bg_before, (bg_before, bg_after)
    assert fg_after > 0.7 * fg_before, (fg_before, fg_after)
