"""Keep TensorFlow's and LiteRT's start-up chatter off the terminal (shown with --verbose).

TensorFlow 2.21 logs through absl before its log level applies (TF_CPP_MIN_LOG_LEVEL does
not silence "oneDNN custom operations are on"), and LiteRT prints "Created TensorFlow
Lite XNNPACK delegate" for every interpreter, both straight to file descriptor 2. The
filter points fd 2 at a pipe whose reader drops those lines and passes everything else
on; Python's own `sys.stderr` keeps writing to the terminal directly (so progress bars
still see a TTY), and native warnings and errors still get through.
"""
from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                   rb"|I0000 [^\]]*\] oneDNN custom operations are on"
                   rb"|[A-Z0-9 .:]*\S*cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"
                   rb"|To enable the following instructions: .*rebuild TensorFlow"
                   rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)")
_PREFIXES = (b"WARNING: All log", b"I0000 ", b"INFO: Created", b"To enable", b"W0000 ", b"E0000 ")
_installed = False


def filter_native_logs() -> bool:
    """Install the filter for this process (once); False when stderr is not the process's
    own (under pytest or click's CliRunner), where it is left alone."""
    global _installed
    if _installed or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return _installed
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(os.fdopen(terminal, "wb", buffering=0),
                                                   encoding=sys.stderr.encoding, errors="backslashreplace",
                                                   line_buffering=True, write_through=True)
    pump = threading.Thread(target=_pump, args=(read_end, terminal), daemon=True, name="native-log-filter")
    pump.start()

    def close():
        os.dup2(terminal, 2)  # closes the pipe's write end: the pump reads EOF and ends
        pump.join(timeout=2)

    atexit.register(close)
    _installed = True
    return True


def _pump(read_end: int, terminal: int) -> None:
    pending = b""
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
        if pending and not any(p.startswith(pending[:len(p)]) for p in _PREFIXES):
            out, pending = out + pending, b""  # a partial line that cannot be noise: show it now
        if out:
            os.write(terminal, out)
    if pending and not NOISE.match(pending):
        os.write(terminal, pending)
