"""tf.distribute: MirroredStrategy over two logical CPUs; two local workers end identical.

Each case runs in fresh processes: logical devices and collective ops must be configured
before TensorFlow initialises its runtime.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from train_helpers import MOBILE_SEG, REPO, build, voc_subset

SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import mobile_seg
    import tensorflow as tf
    data, run, strategy, out = sys.argv[1:5]
    if strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mobile_seg.config import ModelConfig, TrainConfig
    from mobile_seg.training import train
    result = train(data, run, ModelConfig(alpha=0.35, input_size=(64, 64)),
                   TrainConfig(steps=4, batch_size=4, warmup_steps=0, checkpoint_every=2,
                               strategy=strategy, seed=3), progress=False)
    np.savez(out, *result.model.get_weights())
    print(json.dumps({"replicas": result.replicas, "step": result.step, "loss": result.loss}))
''')


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    return build(voc_subset(shared_data / "portraits", tmp / "voc", {"train": 8}), tmp / "built")


def _free_ports(n: int) -> list[int]:
    """n distinct ports free now (all bound at once, so two calls cannot return the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cluster(n: int) -> dict:
    return {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}


def _tf_config(cluster: dict, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _start(built, run, strategy, out, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(built), str(run), strategy, str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_mirrored_strategy_over_two_logical_cpus(built, tmp_path):
    res = _finish(_start(built, tmp_path / "run", "mirrored", tmp_path / "w.npz"))
    assert res["replicas"] == 2 and res["step"] == 4 and np.isfinite(res["loss"])
    assert (tmp_path / "run" / "checkpoints" / "ckpt-4.index").is_file()


def test_two_local_workers_end_with_identical_weights(built, tmp_path):
    cluster = _cluster(2)
    procs = [_start(built, tmp_path / "run", "multiworker", tmp_path / f"w{i}.npz",
                    env={"TF_CONFIG": _tf_config(cluster, i)})
             for i in range(2)]
    try:
        results = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [r["replicas"] for r in results] == [2, 2] and [r["step"] for r in results] == [4, 4]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 100
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # the chief wrote the run; the other worker's temporary checkpoints are gone
    assert (tmp_path / "run" / "checkpoints" / "ckpt-4.index").is_file()
    assert not list((tmp_path / "run" / "checkpoints").glob(".worker-*"))


# --- faults: a worker that never starts, a signal to one worker ---------------------------------

def _train_cli(built, run, tf_config, *extra):
    args = [*MOBILE_SEG, "train", "--data", built, "--out", run, "--strategy", "multiworker", "--alpha", "0.35",
            "--crop-size", "64", "--batch-size", "2", "--warmup-steps", "0", "--log-every", "1", *extra]
    env = {**os.environ, "TF_CONFIG": tf_config, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(a) for a in args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_worker_that_never_starts_is_named_after_the_startup_timeout(built, tmp_path):
    cluster = _cluster(2)
    start = time.monotonic()
    proc = _train_cli(built, tmp_path / "run", _tf_config(cluster, 0), "--steps", "5", "--startup-timeout", "3")
    out, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, err[-2000:]
    assert errors == [f"error: TF_CONFIG: worker 1 ({cluster['worker'][1]}) did not start within 3 s "
                      f"(--startup-timeout); start every worker of the cluster with the same command and "
                      f"its own task index"], err[-2000:]
    assert "Traceback" not in err and time.monotonic() - start < 120
    assert not (tmp_path / "run").exists()


def test_sigterm_while_waiting_for_workers_stops_at_once(built, tmp_path):
    proc = _train_cli(built, tmp_path / "run", _tf_config(_cluster(2), 0), "--steps", "5",
                      "--startup-timeout", "600")
    for line in proc.stderr:
        if "waiting up to 600 s for worker 1" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == ("SIGTERM: stopped while waiting for the other workers; "
                                            "nothing was trained")


def test_sigterm_to_one_worker_stops_every_worker_after_the_same_step_saved(built, tmp_path):
    cluster, run = _cluster(2), tmp_path / "run"
    # --steps far beyond reach: only the signal can end this run (no race with its end)
    procs = [_train_cli(built, run, _tf_config(cluster, i), "--steps", "100000", "--checkpoint-every", "100000")
             for i in range(2)]
    try:
        chief_lines = []
        for line in procs[0].stderr:   # the chief logs one line per step
            chief_lines.append(line)
            if line.startswith("step 3/"):
                break
        procs[1].send_signal(signal.SIGTERM)
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, results[0][1][-2000:] + results[1][1][-2000:]
    chief_log = "".join(chief_lines) + results[0][1]
    saved = re.search(r"SIGTERM \(sent to another worker\): saved checkpoint at step (\d+); rerun the same "
                      r"command on every worker to resume", chief_log)
    assert saved, chief_log[-2000:]
    step = int(saved.group(1))
    assert 3 <= step < 100000 and (run / "checkpoints" / f"ckpt-{step}.index").is_file()
    for out, _ in results:   # both report the same stop step
        assert [line for line in out.splitlines() if line.startswith("stopped: ")][0].startswith(
            f"stopped: step {step}/100000,"), out
    assert "Traceback" not in results[0][1] + results[1][1]
    assert not list((run / "checkpoints").glob(".worker-*"))
    assert json.loads((run / "train_summary.json").read_text())["step"] == step
