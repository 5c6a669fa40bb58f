"""User-facing errors: each names the file (or setting) and the problem in one line.

The CLI prints `error: <message>` for any MobileSegError and exits non-zero; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os


class MobileSegError(Exception):
    """A user mistake: bad file, bad flag, bad data. `str()` is the one-line message."""

    exit_code = 2
    prefix = "error: "    # what the CLI prints before the message

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DatasetError(MobileSegError):
    """A dataset folder, split, image or mask is missing or malformed."""


class ModelFileError(MobileSegError):
    """A model file (.tflite, checkpoint, weights) is missing or not what we expect."""


class ConfigError(MobileSegError):
    """A configuration value or combination of flags is invalid."""


class DeviceError(MobileSegError):
    """A camera, video, adb device or other external resource is unusable."""


class Stopped(MobileSegError):
    """SIGINT/SIGTERM stopped a command cleanly; exit code 128 + the signal's number."""

    prefix = ""

    def __init__(self, signal_name: str, what: str):
        import signal
        self.signal_name = signal_name
        self.exit_code = 128 + int(getattr(signal, signal_name))
        super().__init__(f"{signal_name}: {what}")
