"""Faults and bad input: one line and a clear exit code, one writer per folder, nothing
left looking finished. Each test injects the fault it is about."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_seg.cli import main
from mobile_seg.errors import ConfigError, ModelFileError, Stopped
from mobile_seg.locks import folder_lock, lock_path
from train_helpers import REPO, build, voc_subset

HOLD_LOCK = textwrap.dedent('''
    import sys, time
    from mobile_seg.locks import folder_lock
    with folder_lock(sys.argv[1], "test holder"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
''')


@pytest.fixture(scope="module")
def voc(shared_data, tmp_path_factory):
    """6 train + 2 val real portraits as a VOC folder."""
    return voc_subset(shared_data / "portraits", tmp_path_factory.mktemp("faults") / "voc", {"train": 6, "val": 2})


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/busy: (folder, pid)."""
    folder = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), "120"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield folder, proc.pid
    finally:
        proc.kill()
        proc.wait()


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines, result


# --- case 3: unwritable or invalid output paths ---------------------------------------------------

@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("not a folder\n")
    return path


def test_output_paths_that_cannot_be_written_are_one_line_exit_2(voc, a_file, tmp_path, shared_data):
    image = next((voc / "JPEGImages").iterdir())
    selfie = shared_data / "models" / "selfie_segmentation.tflite"
    cases = [
        (["demo", "--image", image, "--model", selfie, "--no-window", "--output", "/proc/x.jpg"], "/proc/x.jpg"),
        (["demo", "--image", image, "--model", selfie, "--no-window", "--output", a_file / "x.jpg"], "x.jpg"),
        (["data", "build", voc, "--out", a_file / "built"], "built"),
        (["data", "build", voc, "--out", "/proc/built"], "/proc/built"),
        (["bench", selfie, "--csv", "/proc/x.csv", "--runs", "1", "--no-memory"], "/proc/x.csv"),
        (["bench", selfie, "--plot", a_file / "p.png", "--runs", "1", "--no-memory"], "p.png"),
        (["vis", "--tflite", selfie, "--images", voc / "JPEGImages", "--out", a_file / "vis"], "vis"),
        (["train", "--data", tmp_path / "nothing", "--out", a_file / "run"], "run"),
        (["train", "--data", tmp_path / "nothing", "--out", "/proc/run"], "/proc/run"),
    ]
    for args, name in cases:
        code, lines, result = _cli(*args)
        errors = [line for line in lines if line.startswith("error:")]
        assert code == 2, (args, result.output, result.exception)
        assert len(errors) == 1 and name in errors[0] and "cannot write" in errors[0], (args, lines)
        assert "Traceback" not in result.output
    assert a_file.read_text() == "not a folder\n"


def test_an_os_error_while_writing_is_one_line(tmp_path, monkeypatch):
    """The CLI's last line of defence: an OSError with a file name is one error line."""
    import mobile_seg.data.tfrecords as tfrecords

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(tfrecords, "build_dataset", fail)
    code, lines, _ = _cli("data", "build", tmp_path, "--out", tmp_path / "out")
    assert code == 2 and lines == [f"error: {tmp_path / 'x'}: Permission denied"]


# --- case 4: one writer per folder ---------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(holder, voc):
    folder, pid = holder
    with pytest.raises(ConfigError, match=rf"in use by test holder \(pid {pid} on "):
        with folder_lock(folder, "second"):
            pass
    code, lines, _ = _cli("data", "build", voc, "--out", folder)
    assert code == 2 and len(lines) == 1 and f"in use by test holder (pid {pid} " in lines[0], lines
    code, lines, _ = _cli("train", "--data", voc, "--out", folder, "--steps", "1")
    assert code == 2 and f"in use by test holder (pid {pid} " in lines[-1], lines
    assert not folder.exists()   # nothing was written by the refused commands


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), "120"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.kill()   # SIGKILL: the lock file stays, the kernel drops the flock
    proc.wait()
    assert json.loads(lock_path(folder).read_text())["pid"] == proc.pid
    from mobile_seg.locks import note_stale
    with folder_lock(folder, "next") as lock:
        assert lock.stale["pid"] == proc.pid
        note_stale(lock)
        with folder_lock(folder, "same process again"):   # re-entrant
            assert json.loads(lock_path(folder).read_text())["command"] == "next"
    assert f"took over the lock of test holder (pid {proc.pid} " in capsys.readouterr().err
    assert not lock_path(folder).exists()


# --- case 5: data build stopped ----------------------------------------------------------------------------

def test_data_build_sigterm_cleans_up_and_says_so(voc, tmp_path, monkeypatch):
    import mobile_seg.data.tfrecords as tfrecords
    real, calls = tfrecords.encode_example, []

    def encode_then_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:   # mid-build: the temp folder holds a partial shard
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(tfrecords, "encode_example", encode_then_sigterm)
    out = tmp_path / "mid"
    code, lines, result = _cli("data", "build", voc, "--out", out)
    assert code == 128 + signal.SIGTERM, result.output
    assert lines == [f"SIGTERM: build stopped; nothing was written to {out}; rerun the same command"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # no folder, no temp, no lock
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_data_build_removes_the_temps_of_a_killed_build(voc, tmp_path):
    out = tmp_path / "mid"
    stale = tmp_path / ".mid.k1ll3d.tmp"     # what atomic_dir leaves after SIGKILL
    stale.mkdir()
    (stale / "train-00000-of-00001.tfrecord").write_bytes(b"partial")
    (tmp_path / ".mid.lock").write_text('{"pid": 1, "command": "mobile-seg data build"}\n')
    code, lines, result = _cli("data", "build", voc, "--out", out)
    assert code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid"]
    assert json.loads((out / "descriptor.json").read_text())["splits"]["train"]["num_examples"] == 6


# --- case 5: export stopped -----------------------------------------------------------------------------

def test_an_unfinished_export_folder_says_so(tmp_path):
    from converters.export import INCOMPLETE_FILE, export_session
    out = tmp_path / "export"
    with pytest.raises(Stopped):
        with export_session(out):
            (out / "fp32.tflite").write_bytes(b"written before the stop")
            raise Stopped("SIGTERM", "export stopped")
    assert (out / INCOMPLETE_FILE).is_file() and (out / "fp32.tflite").is_file()
    with export_session(out):   # the rerun finishes: the marker goes
        assert (out / INCOMPLETE_FILE).is_file()
    assert sorted(p.name for p in out.iterdir()) == ["fp32.tflite"]
    with pytest.raises(ConfigError):   # a bad flag before anything is written: no folder at all
        with export_session(tmp_path / "never"):
            raise ConfigError("bad flag")
    assert not (tmp_path / "never").exists()


def test_export_cli_stopped_by_sigterm_leaves_a_visibly_incomplete_folder(shared_data, tmp_path, monkeypatch):
    import converters.export as export_mod
    from export_helpers import tiny_run

    def sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)

    real_fp32, converted = export_mod.convert_fp32, []

    def fp32_once(model, spec):   # the same model both times: convert it once (saves a minute)
        converted[:] = converted or [real_fp32(model, spec)]
        return converted[0]

    monkeypatch.setattr(export_mod, "convert_fp16", sigterm)
    monkeypatch.setattr(export_mod, "convert_fp32", fp32_once)
    out = tmp_path / "export"
    code, lines, result = _cli("export", "--run", tiny_run(tmp_path), "--out", out, "--variant", "all",
                               "--data", tmp_path / "none")
    # --variant all needs --data for int8: refused before anything is written
    assert code == 2 and not out.exists(), lines
    code, lines, result = _cli("export", "--run", tiny_run(tmp_path), "--out", out, "--variant", "fp32")
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["export.json", "fp32.tflite"], result.output
    monkeypatch.setattr(export_mod, "resolve_variants", lambda *a: (["fp32", "fp16"], {}))
    code, lines, result = _cli("export", "--run", tiny_run(tmp_path), "--out", out)
    assert code == 128 + signal.SIGTERM, result.output
    assert lines[-1] == (f"SIGTERM: export stopped; {out} is incomplete (see its INCOMPLETE file); "
                         f"rerun the same command")
    assert sorted(p.name for p in out.iterdir()) == ["INCOMPLETE", "fp32.tflite"]  # export.json: gone until done


# --- case 6: a quantized file XNNPACK cannot prepare ------------------------------------------------------

@pytest.fixture(scope="module")
def unpreparable(tmp_path_factory):
    """A full-int8 file whose conv has a requantization scale of ~4e5 (XNNPACK needs < 256):
    weights of 50 and a bias of -400 under a ReLU leave its output range almost empty."""
    import mobile_seg  # noqa: F401
    import tensorflow as tf
    import tf_keras
    x = inp = tf_keras.Input((16, 16, 3), batch_size=1)
    conv = tf_keras.layers.Conv2D(4, 1, activation="relu", name="dead_conv")
    x = tf_keras.layers.Conv2D(2, 1, name="logits")(conv(x))
    model = tf_keras.Model(inp, x)
    kernel, bias = conv.get_weights()
    conv.set_weights([np.full_like(kernel, 50.0), np.full_like(bias, -400.0)])
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(
        tf.TensorSpec([1, 16, 16, 3], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)]
                                                for _ in range(4))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path_factory.mktemp("xnnpack") / "unpreparable.tflite"
    path.write_bytes(converter.convert())
    return path


def test_xnnpack_refusal_names_the_op_and_the_reference_kernels_run_it(unpreparable):
    from ai_edge_litert.interpreter import Interpreter
    from converters.report import interleaved_latency
    from converters.xnnpack import xnnpack_problem
    with pytest.raises(RuntimeError, match="XNNPACK"):
        Interpreter(model_path=str(unpreparable)).allocate_tensors()
    problem = xnnpack_problem(unpreparable)
    assert problem.startswith("XNNPACK cannot prepare it: op 1 CONV_2D (dead_conv): requantization scale ")
    scale = float(problem.split("requantization scale ")[1].split()[0])
    assert 1e4 < scale and "(XNNPACK needs < 256)" in problem
    lat = interleaved_latency({"bad": unpreparable}, runs=3, xnnpack={"bad": False})
    assert lat["bad"]["runs"] == 3 and lat["bad"]["median_ms"] > 0


# --- case 7: smaller ones -------------------------------------------------------------------------------

def test_a_file_given_as_a_run_directory_is_named_as_such(a_file):
    from mobile_seg.checkpoint import read_run_config
    with pytest.raises(ModelFileError, match="is a file, not a run directory"):
        read_run_config(a_file)
    with pytest.raises(ModelFileError, match="run directory not found"):
        read_run_config(a_file.parent / "missing")


def test_native_log_lines_are_hidden_unless_verbose(shared_data):
    selfie = shared_data / "models" / "selfie_segmentation.tflite"
    args = [sys.executable, "-m", "mobile_seg.cli"]
    bench = ["bench", str(selfie), "--runs", "1", "--warmup", "0", "--no-memory"]
    quiet = subprocess.run([*args, *bench], cwd=REPO, capture_output=True, text=True, timeout=300)
    loud = subprocess.run([*args, "--verbose", *bench], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    noise = ("oneDNN custom operations", "Created TensorFlow Lite XNNPACK delegate", "absl::InitializeLog")
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in noise)], quiet.stderr
    assert "Created TensorFlow Lite XNNPACK delegate" in loud.stderr
    assert "selfie_segmentation.tflite" in quiet.stdout


def test_a_truncated_model_file_is_called_truncated(tmp_path):
    from mobile_seg.tflite_model import TFLiteModel
    whole = (REPO / "mobile_seg" / "assets" / "models" / "default.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[:len(whole) // 20])
    with pytest.raises(ModelFileError, match=r"cut.tflite: truncated or corrupt \(not a complete flatbuffer\)"):
        TFLiteModel(cut)
    assert TFLiteModel(REPO / "mobile_seg" / "assets" / "models" / "default.tflite").size_bytes == len(whole)


def test_export_shows_progress_per_file_and_sizes_in_mib(tmp_path):
    import io
    import re
    from converters.export import export
    from export_helpers import mini_model
    from mobile_seg.config import ModelConfig
    stream = io.StringIO()
    result = export(out_dir=tmp_path / "out", variants=["fp32", "fp16"], float_model=mini_model(),
                    config=ModelConfig(alpha=0.35, input_size=(32, 32)), stream=stream)
    lines = stream.getvalue().splitlines()
    assert [line.split(" ...")[0] for line in lines if "converting" in line] == \
        ["[1/2] converting fp32", "[2/2] converting fp16"]
    for f in result.files:
        mib = f"{f.size_bytes / 2**20:.2f} MiB"
        assert any(re.fullmatch(rf"\[\d/2\] wrote {f.variant}\.tflite: {mib} in \d+ s", line) for line in lines), lines
        assert f" {f.size_bytes / 2**20:7.2f} MiB " in result.format()
    assert "MB " not in result.format()


def test_a_signal_that_surfaces_as_another_exception_is_still_a_clean_stop():
    from mobile_seg.signals import stop_on_signals
    with pytest.raises(Stopped, match="^SIGTERM: work stopped$") as info:
        with stop_on_signals("work stopped"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(2)
            except Stopped:   # what TensorFlow does to an error raised in code it traces
                raise RuntimeError("in user code: ...") from None
    assert info.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
