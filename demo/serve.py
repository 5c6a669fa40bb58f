"""`--serve [HOST:]PORT`: the live result as MJPEG over HTTP, and a control page.

    GET  /              the page: preview and live controls
    GET  /stream.mjpg   multipart/x-mixed-replace JPEG stream (OBS, VLC, browsers)
    GET  /snapshot.jpg  the latest frame
    GET  /settings      the live settings as JSON
    POST /settings      {"name": value, ...}: applied by the frame loop between two frames;
                        answers the new settings (200) or {"error": ...} (400)

`MjpegServer` is a frame sink (`write`/`finish`/`abort`, see demo.sinks). The frame loop
only hands over a reference; JPEG encoding happens in the server's threads, once per frame
whatever the number of viewers, and not at all when nobody watches. Binds to 127.0.0.1
unless a host is given.
"""
from __future__ import annotations

import json
import queue
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import cv2
import numpy as np

from mobile_seg.errors import ConfigError, DeviceError, MobileSegError

BOUNDARY = "mobilesegframe"
APPLY_TIMEOUT_S = 5.0


def parse_address(spec: str) -> tuple[str, int]:
    """'8080' → ('127.0.0.1', 8080); 'HOST:PORT' → (HOST, PORT); ConfigError otherwise."""
    match = re.fullmatch(r"(?:\[?([^\]]*?)\]?:)?(\d{1,5})", spec.strip())
    if not match or int(match.group(2)) > 65535:
        raise ConfigError(f"--serve expects [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080), got {spec!r}")
    return match.group(1) or "127.0.0.1", int(match.group(2))


class Controls:
    """Setting changes from HTTP threads, applied by the frame loop between frames."""

    def __init__(self):
        self._pending: queue.Queue = queue.Queue()
        self.state: dict = {}

    def submit(self, changes: dict, timeout: float = APPLY_TIMEOUT_S) -> dict:
        """Queue `changes` and wait until the loop applied them; the new state, or
        ConfigError (bad value) / DeviceError (the loop is not running)."""
        done = threading.Event()
        outcome: dict = {}
        self._pending.put((changes, done, outcome))
        if not done.wait(timeout):
            raise DeviceError("the frame loop is not running (input ended?)")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["state"]

    def apply_pending(self, apply: Callable[[dict], dict]) -> None:
        """Run `apply(changes)` for each queued request (frame-loop thread)."""
        while True:
            try:
                changes, done, outcome = self._pending.get_nowait()
            except queue.Empty:
                return
            try:
                self.state = outcome["state"] = apply(changes)
            except MobileSegError as e:
                outcome["error"] = ConfigError(str(e))
            except (TypeError, ValueError) as e:
                outcome["error"] = ConfigError(f"bad value: {e}")
            done.set()


class MjpegServer:
    """HTTP server in a background thread; see the module docstring.

    Args:
        address: (host, port); port 0 picks a free one (see `url`).
        controls: where POST /settings goes (None: the page is view-only).
        quality: JPEG quality of the stream.
    """

    def __init__(self, address: tuple[str, int], controls: Controls | None = None, quality: int = 80):
        self.controls = controls
        self.quality = quality
        self.frames = 0
        self.jpegs_encoded = 0
        self._frame: np.ndarray | None = None
        self._jpeg: tuple[int, bytes] | None = None  # (frame number, bytes)
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._closed = False
        try:
            self.httpd = ThreadingHTTPServer(address, _handler(self))
        except OSError as e:
            raise DeviceError(f"cannot serve on {address[0]}:{address[1]}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()

    # --- sink contract ------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        with self._cond:
            self._frame = frame
            self.frames += 1
            self._cond.notify_all()

    def finish(self) -> int | None:
        self.close()
        return self.frames or None

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2.0)

    # --- for the handler ----------------------------------------------------------------
    def jpeg(self, after: int = 0, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """(frame number, JPEG) of the newest frame numbered > `after`; None on timeout
        or when closed. Each frame is encoded once, by whichever viewer asks first, outside
        the lock the frame loop takes, so a viewer never holds up the loop."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or (self._frame is not None and self.frames > after),
                                       timeout) or self._closed:
                return None
            number, frame = self.frames, self._frame
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] != number:
                ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    return None
                self._jpeg = (number, data.tobytes())
                self.jpegs_encoded += 1
            return self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed


def _handler(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep stderr for our own lines
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/settings":
                self._json(HTTPStatus.OK, server.controls.state if server.controls else {})
            elif path == "/snapshot.jpg":
                got = server.jpeg(after=max(0, server.frames - 1))
                if got is None:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
                else:
                    self._send(HTTPStatus.OK, got[1], "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            last = max(0, server.frames - 1)
            try:
                while not server.closed:
                    got = server.jpeg(after=last)
                    if got is None:
                        continue
                    last, data = got
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self):  # noqa: N802
            if self.path.split("?", 1)[0] != "/settings" or server.controls is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "POST /settings only"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                changes = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(changes, dict):
                    raise ConfigError("expected a JSON object {name: value}")
                self._json(HTTPStatus.OK, server.controls.submit(changes))
            except (ValueError, ConfigError) as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except DeviceError as e:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})

    return Handler


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mobile-seg demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px system-ui, sans-serif; margin: 0; background: #16181c; color: #e8e8e8; display: flex; }
#view { padding: 12px; } #view img { display: block; max-width: 100%; background: #000; }
form { padding: 12px 16px; min-width: 240px; } h1 { font-size: 16px; margin: 0 0 12px; }
label { display: block; margin: 10px 0 2px; color: #aab; } select, input[type=range] { width: 100%; }
output { float: right; color: #e8e8e8; } #status { margin-top: 14px; color: #8c8; min-height: 1.2em; }
#status.err { color: #f88; } a { color: #9bf; }
</style></head><body>
<div id="view"><img id="preview" src="/stream.mjpg" alt="live result"></div>
<form id="controls" onsubmit="return false">
<h1>mobile-seg demo</h1>
<label for="effect">effect</label>
<select id="effect" name="effect"><option>blur</option><option>bokeh</option><option>colour</option>
<option>replace</option><option>mask</option></select>
<label for="background">background (for replace)</label><select id="background" name="background"></select>
<label for="strength">blur strength <output id="strength_v"></output></label>
<input id="strength" name="strength" type="range" min="0" max="40" step="1">
<label for="threshold">threshold <output id="threshold_v"></output></label>
<input id="threshold" name="threshold" type="range" min="0.1" max="0.9" step="0.05">
<label for="smoothing">smoothing <output id="smoothing_v"></output></label>
<input id="smoothing" name="smoothing" type="range" min="0" max="0.95" step="0.05">
<label for="motion">motion-adaptive (0 = off) <output id="motion_v"></output></label>
<input id="motion" name="motion" type="range" min="0" max="1" step="0.05">
<label for="refine">refinement</label>
<select id="refine" name="refine"><option>guided</option><option>none</option></select>
<label for="subject">subject</label>
<select id="subject" name="subject"><option>all</option><option>largest</option><option>center</option></select>
<label for="min_area">min. area (fraction of frame) <output id="min_area_v"></output></label>
<input id="min_area" name="min_area" type="range" min="0" max="0.05" step="0.001">
<div id="status"></div>
<p><a href="/stream.mjpg">stream.mjpg</a> · <a href="/snapshot.jpg">snapshot.jpg</a></p>
</form>
<script>
const numeric = ["strength", "threshold", "smoothing", "motion", "min_area", "background"];
const status = document.getElementById("status");
function show(state) {
  const bg = document.getElementById("background");
  bg.innerHTML = "";
  (state.backgrounds || []).forEach((name, i) => bg.add(new Option(name, i)));
  bg.disabled = !(state.backgrounds || []).length;
  for (const [k, v] of Object.entries(state)) {
    const el = document.getElementById(k);
    if (el && k !== "backgrounds") { el.value = v; const o = document.getElementById(k + "_v"); if (o) o.value = v; }
  }
  document.body.dataset.state = JSON.stringify(state);
}
async function send(changes) {
  const r = await fetch("/settings", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(changes)});
  const body = await r.json();
  status.className = r.ok ? "" : "err";
  status.textContent = r.ok ? "applied: " + JSON.stringify(changes) : body.error;
  if (r.ok) show(body);
}
document.getElementById("controls").addEventListener("change", (e) => {
  const k = e.target.name;
  const v = numeric.includes(k) ? Number(e.target.value) : e.target.value;
  send(k === "background" ? {background: v, effect: "replace"} : {[k]: v});
});
document.getElementById("controls").addEventListener("input", (e) => {
  const o = document.getElementById(e.target.name + "_v"); if (o) o.value = e.target.value;
});
fetch("/settings").then((r) => r.json()).then(show);
</script></body></html>
"""
