"""Window mode under a virtual X server: the live view shows the person sharp, the
background blurred. Starts `Xvfb` on a free display, runs `mobile-seg demo --image ...` as
a subprocess, screenshots the root window with ImageMagick's `import`, and compares
sharpness (Laplacian variance) region by region with the original picture."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def _free_display() -> int:
    for n in range(99, 400):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb():
    n = _free_display()
    proc = subprocess.Popen([XVFB, f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-br"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, DISPLAY=f":{n}")
    deadline = time.time() + 10
    while time.time() < deadline:
        if subprocess.run([XWININFO, "-root"], env=env, capture_output=True).returncode == 0:
            break
        if proc.poll() is not None:
            pytest.fail(f"Xvfb :{n} exited with {proc.returncode}")
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"Xvfb :{n} did not come up")
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


def test_window_shows_blurred_background_and_sharp_person(xvfb, tmp_path, shared_data):
    image_path = shared_data / "portraits" / "JPEGImages" / f"{PORTRAIT}.jpg"
    mask = np.array(Image.open(shared_data / "portraits" / "SegmentationClass" / f"{PORTRAIT}.png")) == 1
    original = cv2.imread(str(image_path))
    h, w = original.shape[:2]
    model = shared_data / "models" / "selfie_segmentation.tflite"
    cmd = [sys.executable, "-m", "mobile_seg.cli", "demo", "--image", str(image_path), "--model", str(model),
           "--max-frames", "3000", "--stats"]
    proc = subprocess.Popen(cmd, env=xvfb, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shot = tmp_path / "screen.png"
    try:
        deadline = time.time() + 30
        geometry = None
        while time.time() < deadline and proc.poll() is None:
            geometry = _window_geometry(xvfb)
            if geometry and geometry[2:] == (w, h):
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"demo exited early: {proc.communicate()}"
        assert geometry and geometry[2:] == (w, h), f"window not found or wrong size: {geometry}"
        time.sleep(1.0)  # let a few frames through (temporal smoothing settles on a still image)
        subprocess.run([IMPORT, "-window", "root", str(shot)], env=xvfb, check=True, timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # the demo stops cleanly on SIGINT
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "(interrupted)" in out and "end-to-end:" in out

    screen = cv2.imread(str(shot))
    x, y = geometry[:2]
    view = screen[y:y + h, x:x + w]
    assert view.shape == original.shape
    # The overlay box (FPS, settings, keys) sits in the top-left corner: leave the top rows out.
    k = np.ones((31, 31), np.uint8)
    person = cv2.erode(mask.astype(np.uint8), k) > 0
    background = cv2.erode((~mask).astype(np.uint8), k) > 0
    person[:70] = background[:70] = False
    bg_before, bg_after = _lap_var(original, background), _lap_var(view, background)
    fg_before, fg_after = _lap_var(original, person), _lap_var(view, person)
    assert bg_after < 0.1 * bg_before, (bg_before, bg_after)
    assert fg_after > 0.7 * fg_before, (fg_before, fg_after)
