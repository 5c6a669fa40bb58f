"""The `mobile-seg` command line: a thin click layer over library functions.

Each command parses flags, calls one library function, prints its result. Library
imports happen inside the commands so that `--help` stays fast (TensorFlow takes
seconds to import). A MobileSegError becomes one `error:` line and a non-zero exit.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from mobile_seg import __version__
from mobile_seg.errors import MobileSegError


def user_errors(fn):
    """Turn a MobileSegError raised by `fn` into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MobileSegError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper


def echo_json(obj) -> None:
    """Print one JSON object on a single line (the `--json` contract: last line of output)."""
    click.echo(json.dumps(obj, separators=(",", ":"), default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mobile-seg")
def main() -> None:
    """mobile-seg: person segmentation from data to phone."""


# === data (issue: foundation) ===

# === model / train / eval / vis (issue: DeepLabV3+) ===

# === qat / export (issue: QAT & export) ===

# === bench (issue: bench) ===

# === demo (issue: demo) ===


if __name__ == "__main__":
    main()
