"""SIGINT/SIGTERM for long commands: a flag a loop checks, or a clean exception.

`StopFlag` is for loops that must finish a step and save (train, qat); `stop_on_signals`
turns the signal into `Stopped` so that `with` blocks (atomic writes, locks) clean up and
the CLI prints one line and exits 128 + the signal's number.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from mobile_seg.errors import Stopped

SIGNALS = ("SIGINT", "SIGTERM")


def _install(handler) -> dict:
    """Set `handler` for SIGINT/SIGTERM (main thread only); return what to restore."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in SIGNALS:
            sig = getattr(signal, name)
            old = signal.signal(sig, handler)
            # None: a handler set outside Python (TensorFlow's coordination service sets one
            # for SIGTERM); restore the default then.
            previous[sig] = signal.SIG_DFL if old is None else old
    return previous


def _restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __init__(self):
        self.signal: str | None = None
        self._previous = {}

    def __enter__(self):
        self._previous = _install(self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:  # second Ctrl-C: give up now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        _restore(self._previous)
        return False


@contextlib.contextmanager
def stop_on_signals(what: str) -> Iterator[None]:
    """Raise Stopped("<SIGNAL>: <what>") in the main thread on SIGINT/SIGTERM.

    The exception may surface as another type (TensorFlow re-raises errors from code it
    traces as its own); whatever leaves the block after a signal is turned back into Stopped.
    """
    received: list[str] = []

    def handle(signum, frame):
        received.append(signal.Signals(signum).name)
        raise Stopped(received[0], what)

    previous = _install(handle)
    try:
        yield
    except BaseException as e:
        if received and not isinstance(e, Stopped):
            raise Stopped(received[0], what) from None
        raise
    finally:
        _restore(previous)
