"""One writer per output folder: `train`, `qat`, `export` and `data build` lock theirs.

The lock is a file beside the folder (`.<name>.lock`, so a folder replaced by a rename
keeps it) holding an exclusive `flock` and a line saying who holds it. The kernel drops a
flock when its process ends however it ends, so the file a killed process leaves behind
locks nothing: the next command takes it over and says whose it was.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mobile_seg.errors import ConfigError

_held: dict[str, int] = {}   # lock path -> nesting depth in this process


@dataclass(frozen=True)
class Lock:
    path: Path
    stale: dict | None      # holder recorded by a process that died holding the lock


def lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"{holder.get('command', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since})"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Lock]:
    """Hold `folder`'s lock for the block (re-entrant in one process).

    Raises ConfigError naming the holder when another live process holds it.
    """
    path = lock_path(folder)
    key = str(path)
    if key in _held:
        _held[key] += 1
        try:
            yield Lock(path, None)
        finally:
            _held[key] -= 1
        return
    fd, stale = _acquire(path, folder)
    _held[key] = 1
    try:
        record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield Lock(path, stale)
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(path)   # before unlocking: a waiter then sees another inode and retries
        os.close(fd)


def _acquire(path: Path, folder) -> tuple[int, dict | None]:
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # `--out a/b/run` with a/b not there yet
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot create the lock file {path} ({e.strerror or e})", folder) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ConfigError(f"in use by {describe_holder(holder)}; wait for it to end or stop it "
                              f"(lock: {path})", folder) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, _read(fd)
        os.close(fd)   # the holder released and removed it between our open and flock


def _read(fd: int) -> dict | None:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def note_stale(lock: Lock, stream=None) -> None:
    """Say that a dead process's lock was taken over (stderr)."""
    if lock.stale:
        print(f"note: took over the lock of {describe_holder(lock.stale)}, which is no longer running",
              file=stream or sys.stderr, flush=True)
