#!/usr/bin/env bash
# One command to set up mobile-seg: a virtualenv in .venv with the pinned stack,
# the project installed editable, and `mobile-seg` on the venv's PATH.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# System libraries: OpenCV's GUI needs libGL/GLib; the window-mode demo test runs under Xvfb;
# the demo's served control page is tested in headless Chromium.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  for p in libgl1 libglib2.0-0 xvfb x11-utils imagemagick chromium; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "setup: could not install ${need[*]} (the window-mode and browser demo tests will be skipped)" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# CPU TensorFlow first; tf-keras and tfmot without deps so pip does not pull the GPU tensorflow.
pip install -q -r requirements.txt
pip install -q --no-deps tf-keras==2.21.0 tensorflow-model-optimization==0.8.1
pip install -q --no-deps -e .
mobile-seg --version

# MediaPipe Tasks (the client test, tests/test_mediapipe.py) in its own venv: in ours it would
# upgrade absl-py and add a second cv2. Offline after this; the test runs a script in it.
[ -x .venv-mediapipe/bin/python ] || "$PY" -m venv .venv-mediapipe
.venv-mediapipe/bin/pip install -q mediapipe==1.2.3
