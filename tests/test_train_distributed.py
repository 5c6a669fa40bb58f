"""tf.distribute: MirroredStrategy over two logical CPUs; two local workers end identical.

Each case runs in fresh processes: logical devices and collective ops must be configured
before TensorFlow initialises its runtime.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from train_helpers import REPO, build, voc_subset

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
    from mobile_seg.train import train
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = [_start(built, tmp_path / "run", "multiworker", tmp_path / f"w{i}.npz",
                    env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
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
