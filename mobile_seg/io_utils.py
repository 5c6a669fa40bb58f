"""Atomic file writing: outputs appear complete under their final name or not at all."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file is wanted
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, clean_stale: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside `path`; move it to `path` only if the block succeeds.

    An existing `path` is replaced only after the new content is complete. `clean_stale`
    first removes the temps a killed writer left (only while holding `path`'s lock).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_output_path(path: str | os.PathLike, kind: str = "file") -> Path:
    """Raise ConfigError (one line) unless `path` can be written as a `kind` ("file"/"dir").

    Checked before any work: an existing folder of the wrong kind, a parent that is a
    file, and a folder we cannot create files in (read-only, /proc, permissions) are
    refused by actually creating (and removing) a temp file in the nearest existing folder.
    """
    from mobile_seg.errors import ConfigError
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise ConfigError("is a directory, not a file", path)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise ConfigError("exists and is not a directory", path)
    folder = path if kind == "dir" else path.parent
    folder = folder if str(folder) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write under {folder}: it is a file, not a folder", path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write in {folder} ({e.strerror or e})", path) from None
    return path


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp files/folders `atomic_path`/`atomic_dir` left beside `path` when a
    killed process could not clean up. Call it only while holding `path`'s folder lock."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp")]
    old = path.with_name(f".{path.name}.old")
    stale += [old] if old.exists() else []
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
