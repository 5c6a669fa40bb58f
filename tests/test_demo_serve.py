"""`mobile-seg demo --serve`: the MJPEG stream, the settings API, and the control page in
headless Chromium (page loads, the preview shows a blurred frame, a control changes the
stream). The demo runs as a subprocess on a still portrait with MediaPipe's selfie model.

Set MOBILE_SEG_DOCS_SCREENSHOT=docs/images/demo_serve_page.png to keep the page's
screenshot (that is how the picture in docs/demo.md is made)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cdp_browser import CHROMIUM, Chromium
from demo.serve import parse_address
from mobile_seg.errors import ConfigError

PORTRAIT = "portrait_142"  # 480×640 (w×h), full body in front of a brick wall and trees


@pytest.fixture(scope="module")
def portrait(shared_data):
    root = shared_data / "portraits"
    image = cv2.imread(str(root / "JPEGImages" / f"{PORTRAIT}.jpg"))
    mask = np.array(Image.open(root / "SegmentationClass" / f"{PORTRAIT}.png")) == 1
    k = np.ones((31, 31), np.uint8)
    background = cv2.erode((~mask).astype(np.uint8), k) > 0
    person = cv2.erode(mask.astype(np.uint8), k) > 0
    return root / "JPEGImages" / f"{PORTRAIT}.jpg", image, background, person


@pytest.fixture
def served(shared_data, portrait):
    """A running `demo --serve 127.0.0.1:0` on the portrait; yields its URL."""
    cmd = [sys.executable, "-m", "mobile_seg.cli", "demo", "--image", str(portrait[0]), "--serve", "127.0.0.1:0",
           "--model", str(shared_data / "models" / "selfie_segmentation.tflite"), "--max-frames", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.time() + 60
    while time.time() < deadline and url is None:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.match(r"serving (http://\S+/) ", line)
        url = match.group(1) if match else None
    if url is None:
        proc.kill()
        pytest.fail(f"demo did not report its URL: {proc.communicate()}")
    yield url
    proc.send_signal(signal.SIGINT)  # stops cleanly: stream closed, stats printed
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "(interrupted)" in out and f"served {url}" in out


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, changes: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "settings", data=json.dumps(changes).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def lap_var(image: np.ndarray, region: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)[region].var())


def saturation(image: np.ndarray, region: np.ndarray) -> float:
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1][region].mean())


def test_parse_address_defaults_to_localhost():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("http://x", "host:", "99999", ""):
        with pytest.raises(ConfigError, match=r"--serve expects \[HOST:\]PORT"):
            parse_address(bad)


def test_a_busy_port_is_one_clear_error(portrait, shared_data, tmp_path):
    import socket

    from click.testing import CliRunner

    from mobile_seg.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(main, ["demo", "--image", str(portrait[0]), "--serve", str(port),
                                        "--output", str(tmp_path / "o.png"),
                                        "--model", str(shared_data / "models" / "selfie_segmentation.tflite")])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: cannot serve on 127.0.0.1:{port}: Address already in use"
    assert list(tmp_path.iterdir()) == []


def test_stream_snapshot_and_settings_api(served, portrait):
    _, image, background, person = portrait
    status, page = get(served)
    assert status == 200 and b'<img id="preview" src="/stream.mjpg"' in page
    # Two parts of the MJPEG stream: each a full JPEG frame of the input's size.
    with urllib.request.urlopen(served + "stream.mjpg", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        frames = []
        for _ in range(2):
            assert r.readline().strip() == b"--mobilesegframe"
            headers = dict(line.decode().strip().split(": ", 1) for line in iter(r.readline, b"\r\n"))
            assert headers["Content-Type"] == "image/jpeg"
            frames.append(cv2.imdecode(np.frombuffer(r.read(int(headers["Content-Length"])), np.uint8),
                                       cv2.IMREAD_COLOR))
            r.readline()
    assert all(f.shape == image.shape for f in frames)
    assert lap_var(frames[1], background) < 0.1 * lap_var(image, background)  # blurred
    status, state = get(served + "settings")
    state = json.loads(state)
    assert status == 200 and state["effect"] == "blur" and state["strength"] == 15.0
    # Bad requests: one clear message, nothing changed.
    assert post(served, {"threshold": 2}) == (400, {"error": "--threshold must be in (0, 1), got 2"})
    code, body = post(served, {"every": 3})
    assert code == 400 and "cannot change every while running" in body["error"]
    assert post(served, {"effect": "replace"})[1]["error"].startswith("--effect replace needs --background")
    # Strength 0: the background is the frame itself (up to JPEG loss).
    code, state = post(served, {"strength": 0})
    assert code == 200 and state["strength"] == 0
    time.sleep(0.3)
    snap = cv2.imdecode(np.frombuffer(get(served + "snapshot.jpg")[1], np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(snap.astype(int) - image)[background].mean() < 4
    assert get(served + "nope")[0] == 404


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (setup.sh installs it as root)")
def test_control_page_in_headless_chromium(served, portrait, tmp_path):
    _, image, background, person = portrait
    h, w = image.shape[:2]
    browser = Chromium(str(tmp_path / "profile"), width=1000, height=h + 24)
    try:
        browser.call("Page.navigate", url=served)
        browser.wait_for("document.getElementById('preview').naturalWidth > 0 && document.body.dataset.state")
        rect = browser.evaluate("(() => { const r = document.getElementById('preview').getBoundingClientRect();"
                                " return [r.x, r.y, r.width, r.height]; })()")
        x, y = round(rect[0]), round(rect[1])
        assert [round(v) for v in rect[2:]] == [w, h]
        assert browser.evaluate("document.getElementById('effect').value") == "blur"
        time.sleep(1.0)  # a few frames: temporal smoothing settles on the still
        png, shot = browser.screenshot()
        view = shot[y:y + h, x:x + w]
        assert lap_var(view, background) < 0.1 * lap_var(image, background)
        assert lap_var(view, person) > 0.7 * lap_var(image, person)
        assert saturation(view, background) > 20  # blurred, still in colour
        if os.environ.get("MOBILE_SEG_DOCS_SCREENSHOT"):
            Path(os.environ["MOBILE_SEG_DOCS_SCREENSHOT"]).write_bytes(png)

        # The user picks "colour" in the effect list: the page posts it, the stream follows.
        browser.evaluate("(() => { const s = document.getElementById('effect'); s.value = 'colour';"
                         " s.dispatchEvent(new Event('change', {bubbles: true})); })()")
        assert "applied" in browser.wait_for("document.getElementById('status').textContent")
        deadline, view = time.time() + 10, None
        while time.time() < deadline:
            view = browser.screenshot()[1][y:y + h, x:x + w]
            if saturation(view, background) < 3:
                break
            time.sleep(0.2)
        assert saturation(view, background) < 3 < 20 < saturation(view, person)
        assert json.loads(get(served + "settings")[1])["effect"] == "colour"
    finally:
        browser.close()
