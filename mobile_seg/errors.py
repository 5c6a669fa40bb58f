"""User-facing errors: each names the file (or setting) and the problem in one line.

Every error a user can cause is a MobileSegError defined here. `user_error_line` maps them
(and an OSError naming a file) to `<prefix><message>` and the class's `exit_code` (2 unless
said otherwise); the CLI group and `run_script` (the recipes' scripts) print that line and
exit; anything else is a bug and keeps its traceback.
This module imports nothing of ours (the bottom row, with spec.py).
"""
from __future__ import annotations

import os
import sys


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


class SpecError(ConfigError, ValueError):
    """A model spec value that cannot be right (input size, normalisation, labels, metrics)."""


class DatasetProblems(DatasetError):
    """The dataset failed its check: `data build` refuses it (exit code 2, a user error;
    `data check` itself reports problems with exit code 1, its verdict)."""


class ExportError(ModelFileError):
    """A TFLite conversion failed; the message names the variant, op and layer."""


class TrainingDiverged(MobileSegError):
    """The training loss became NaN or infinite; the run keeps its last checkpoint. Exit 3."""

    exit_code = 3


class Stopped(MobileSegError):
    """SIGINT/SIGTERM stopped a command cleanly; exit code 128 + the signal's number."""

    prefix = ""

    def __init__(self, signal_name: str, what: str):
        import signal
        self.signal_name = signal_name
        self.exit_code = 128 + int(getattr(signal, signal_name))
        super().__init__(f"{signal_name}: {what}")


def user_error_line(e: BaseException) -> tuple[str, int] | None:
    """(the one line to print, the exit code) for a user error: a MobileSegError, or an
    OSError naming a file (unreadable, unwritable, disk full); None for anything else (a bug)."""
    if isinstance(e, MobileSegError):
        return f"{e.prefix}{e}", e.exit_code
    if isinstance(e, OSError) and e.filename is not None:
        return f"error: {e.filename}: {e.strerror or e}", 2
    return None


def run_script(main, argv: list[str]) -> None:
    """Run a script's `main(argv)` as the CLI runs a command: a user error becomes one line on
    stderr and its exit code."""
    try:
        main(argv)
    except (MobileSegError, OSError) as e:
        report = user_error_line(e)
        if report is None:
            raise
        print(report[0], file=sys.stderr)
        sys.exit(report[1])
