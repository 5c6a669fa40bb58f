"""Multi-worker start-up from TF_CONFIG: who is chief, and waiting for every worker.

`MultiWorkerMirroredStrategy()` blocks inside TensorFlow until every task has joined,
ignoring signals and with no timeout, so a worker that never starts would hang the
others for ever. `wait_for_workers` comes first: each worker listens on its own port
and connects to every other task's, in plain Python (signals work), until all answer
or the start-up timeout names the ones that did not.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from typing import Callable

from mobile_seg.errors import ConfigError

DEFAULT_STARTUP_TIMEOUT = 300.0
JOBS = ("chief", "worker")    # the tasks that train (not "ps" or "evaluator")


def read_tf_config() -> dict:
    """TF_CONFIG as a dict (ConfigError when missing, not JSON, or without cluster/task)."""
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("--strategy multiworker needs the TF_CONFIG environment variable "
                          "(cluster spec and this worker's task); see docs/train.md")
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
        task = tf_config["task"]
        cluster = tf_config["cluster"]
        cluster[task["type"]][int(task["index"])]
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e})") from None
    except (KeyError, IndexError, TypeError):
        raise ConfigError("TF_CONFIG needs \"cluster\" and a \"task\" (type, index) listed in "
                          "that cluster") from None
    return tf_config


def is_chief(tf_config: dict) -> bool:
    """The chief task, or worker 0 when the cluster has no chief (TensorFlow's rule)."""
    task = tf_config["task"]
    if "chief" in tf_config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def _tasks(tf_config: dict) -> list[tuple[str, str]]:
    """[(name like 'worker 1', 'host:port')] of every training task."""
    return [(f"{job} {i}", address) for job in JOBS
            for i, address in enumerate(tf_config["cluster"].get(job, []))]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def _answers(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection(_split(address), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_workers(tf_config: dict, timeout_s: float = DEFAULT_STARTUP_TIMEOUT, poll_s: float = 0.5,
                     log: Callable[[str], None] | None = None) -> None:
    """Listen on this task's port until every other training task's port answers.

    Raises ConfigError naming the tasks that did not start within `timeout_s`, or when
    this task's port is taken.
    """
    task = tf_config["task"]
    me = f"{task['type']} {int(task['index'])}"
    mine = tf_config["cluster"][task["type"]][int(task["index"])]
    others = [(name, address) for name, address in _tasks(tf_config) if name != me]
    listener = socket.socket(socket.AF_INET6 if ":" in _split(mine)[0] else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind(("", _split(mine)[1]))
        except OSError as e:
            why = "is in use by another program" if e.errno == errno.EADDRINUSE else f"cannot be opened ({e.strerror})"
            raise ConfigError(f"TF_CONFIG: the port of {me} ({mine}) {why}") from None
        listener.listen(64)
        deadline = time.monotonic() + timeout_s
        said = False
        while True:
            missing = [(name, address) for name, address in others if not _answers(address)]
            if not missing:
                return
            if time.monotonic() >= deadline:
                names = ", ".join(f"{name} ({address})" for name, address in missing)
                raise ConfigError(f"TF_CONFIG: {names} did not start within {timeout_s:g} s "
                                  f"(--startup-timeout); start every worker of the cluster with the "
                                  f"same command and its own task index")
            if log is not None and not said:
                log(f"{me}: waiting up to {timeout_s:g} s for "
                    f"{', '.join(name for name, _ in missing)} to start")
                said = True
            time.sleep(poll_s)
    finally:
        listener.close()
