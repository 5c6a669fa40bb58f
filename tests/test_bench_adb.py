"""`mobile-seg bench --adb`: benchmark_model output parsing, and the adb conversation with a
fake `adb` on PATH that records its arguments and answers with real benchmark_model output."""
from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import tiny_tflite
from mobile_seg.bench.adb import (REMOTE_BINARY, REMOTE_DIR, latency_from_output, parse_benchmark_output,
                                  parse_devices, run_adb_bench)
from mobile_seg.cli import main
from mobile_seg.errors import ConfigError, DeviceError, ModelFileError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_tflite.tiny_models(tmp_path_factory.mktemp("tiny_tflite"))


# --- parsing real benchmark_model output ------------------------------------------------------

def test_parse_info_prefixed_output():
    p = parse_benchmark_output(fixture_text("cpu_info_prefix.txt"))
    assert p["init_ms"] == pytest.approx(87.639) and p["first_ms"] == pytest.approx(106.436)
    assert p["warmup_avg_ms"] == pytest.approx(106.065) and p["inference_avg_ms"] == pytest.approx(105.784)
    assert p["inference"] == {"count": 50, "first": 106022, "curr": 105780, "min": 105416, "max": 106528,
                              "avg": 105784, "std": 260, "p5": 105485, "median": 105718, "p95": 106281}
    assert p["warmup"]["count"] == 5 and p["warmup"]["median"] == 105948
    assert (p["memory_init_mb"], p["memory_overall_mb"]) == (pytest.approx(14.4414), pytest.approx(14.8164))
    assert p["memory_peak_mb"] is None and p["model_size_mb"] == pytest.approx(4.2761)
    lat = latency_from_output(p)
    assert lat.runs == 50 and lat.mean_ms == pytest.approx(105.784) and lat.median_ms == pytest.approx(105.718)
    assert (lat.min_ms, lat.max_ms, lat.std_ms) == (pytest.approx(105.416), pytest.approx(106.528), pytest.approx(0.26))
    assert lat.p90_ms is None and lat.p99_ms is None


def test_parse_gpu_output_keeps_delegate_lines():
    p = parse_benchmark_output(fixture_text("gpu_info_prefix.txt"))
    assert p["init_ms"] == pytest.approx(1361.236) and p["memory_overall_mb"] == pytest.approx(132.816)
    assert latency_from_output(p).median_ms == pytest.approx(115.35)
    assert p["delegate"] == [
        "Created 1 GPU delegate kernels.",
        "Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate."]


def test_parse_legacy_output():
    p = parse_benchmark_output(fixture_text("cpu_legacy.txt"))
    assert p["inference_avg_ms"] == pytest.approx(2950.34) and p["warmup_avg_ms"] == pytest.approx(3512.39)
    assert p["warmup"] == {"count": 1, "curr": 3512391}
    lat = latency_from_output(p)
    assert lat.runs == 50 and lat.mean_ms == pytest.approx(2950.34) and lat.median_ms is None
    assert lat.min_ms == pytest.approx(2727.568)
    assert (p["memory_init_mb"], p["memory_overall_mb"]) == (pytest.approx(4.21094), pytest.approx(46.0859))


def test_parse_peak_memory_legacy_output():
    p = parse_benchmark_output(fixture_text("cpu_peak_memory_legacy.txt"))
    assert p["init_ms"] == pytest.approx(16.242) and p["memory_overall_mb"] == pytest.approx(138.809)
    assert p["warmup"] is None and p["inference"]["avg"] == 249684


def test_parse_rejects_output_without_timings():
    with pytest.raises(ValueError, match="Inference timings"):
        parse_benchmark_output(fixture_text("not_executable.txt"))


def test_parse_devices():
    out = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
           "List of devices attached\nR58M1234ABC\tdevice\nemulator-5554\tunauthorized\n\n")
    assert parse_devices(out) == [("R58M1234ABC", "device"), ("emulator-5554", "unauthorized")]
    assert parse_devices("List of devices attached\n\n") == []


# --- the fake adb -------------------------------------------------------------------------

FAKE_ADB = textwrap.dedent('''\
    #!{python}
    """Fake adb: records argv, answers like adb (devices, getprop, push, shell)."""
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_ADB_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    if args and args[0] == "-s":
        args = args[2:]
    if args == ["devices"]:
        sys.stdout.write("List of devices attached\\n" + os.environ.get("FAKE_ADB_DEVICES", ""))
    elif args == ["shell", "getprop"]:
        sys.stdout.write("[ro.product.model]: [Pixel 7]\\n[ro.product.cpu.abi]: [arm64-v8a]\\n")
    elif args[0] == "push":
        sys.stdout.write(args[1] + ": 1 file pushed, 0 skipped. 41.2 MB/s (4296 bytes in 0.001s)\\n")
    elif args[0] == "shell" and args[1].endswith("/benchmark_model"):
        sys.stdout.write(open(os.environ["FAKE_ADB_BENCH_OUTPUT"]).read())
        sys.exit(int(os.environ.get("FAKE_ADB_BENCH_RC", "0")))
''')


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    """Put a fake adb first on PATH; return a helper to configure it and read its log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    adb = bindir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "adb_log.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M1234ABC\tdevice\n")
    monkeypatch.setenv("FAKE_ADB_BENCH_OUTPUT", str(FIXTURES / "cpu_info_prefix.txt"))

    class Fake:
        path = adb

        @staticmethod
        def calls():
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        @staticmethod
        def set(**env):
            for k, v in env.items():
                monkeypatch.setenv(f"FAKE_ADB_{k.upper()}", str(v))

    return Fake


@pytest.fixture
def binary(tmp_path):
    """A stand-in benchmark_model: only its ELF magic is checked locally."""
    path = tmp_path / "android_aarch64_benchmark_model"
    path.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    return path


def test_adb_run_sends_exact_commands_and_parses(fake_adb, binary, tiny):
    r = run_adb_bench([tiny["fp32"], tiny["int8"]], binary, threads="1,4", runs=50, warmup=5)
    s = ["-s", "R58M1234ABC"]
    bench = lambda model, t: s + ["shell", REMOTE_BINARY, f"--graph={REMOTE_DIR}/{model}", f"--num_threads={t}",  # noqa: E731
                                  "--num_runs=50", "--warmup_runs=5", "--min_secs=0", "--warmup_min_secs=0"]
    assert fake_adb.calls() == [
        ["devices"],
        s + ["shell", "getprop"],
        s + ["shell", "mkdir", "-p", REMOTE_DIR],
        s + ["push", str(binary), REMOTE_BINARY],
        s + ["shell", "chmod", "755", REMOTE_BINARY],
        s + ["push", str(tiny["fp32"]), f"{REMOTE_DIR}/0_tiny_fp32.tflite"],
        s + ["push", str(tiny["int8"]), f"{REMOTE_DIR}/1_tiny_int8.tflite"],
        bench("0_tiny_fp32.tflite", 1), bench("1_tiny_int8.tflite", 1),
        bench("0_tiny_fp32.tflite", 4), bench("1_tiny_int8.tflite", 4),
        s + ["shell", "rm", "-rf", REMOTE_DIR],
    ]
    assert r.target == "adb" and r.environment["model"] == "Pixel 7" and r.environment["abi"] == "arm64-v8a"
    rows = r.rows()
    assert [(row["model"], row["threads"]) for row in rows] == [
        ("tiny_fp32.tflite", 1), ("tiny_int8.tflite", 1), ("tiny_fp32.tflite", 4), ("tiny_int8.tflite", 4)]
    row = rows[1]
    assert row["init_ms"] == pytest.approx(87.639) and row["first_ms"] == pytest.approx(106.436)
    assert row["mean_ms"] == pytest.approx(105.784) and row["median_ms"] == pytest.approx(105.718)
    assert row["p90_ms"] is None and row["runs"] == 50 and row["peak_rss_mb"] == pytest.approx(14.8164)
    assert row["ratio"] == pytest.approx(1.0) and row["ratio_of"] == "median"
    assert (row["ops_int8"], row["ops_float"]) == (5, 0)  # census read locally from the file
    assert any(n.startswith("device: Pixel 7 (arm64-v8a)") for n in r.notes)


def test_adb_gpu_legacy_binary_and_explicit_serial(fake_adb, binary, tiny):
    fake_adb.set(devices="emulator-5554\tdevice\nR58M1234ABC\tdevice\n",
                 bench_output=FIXTURES / "cpu_legacy.txt")
    r = run_adb_bench([tiny["fp32"]], binary, serial="emulator-5554", runs=3, warmup=1, accelerator="gpu",
                      xnnpack=False)
    runs = [c for c in fake_adb.calls() if c[3:4] == [REMOTE_BINARY]]
    assert runs == [["-s", "emulator-5554", "shell", REMOTE_BINARY, f"--graph={REMOTE_DIR}/0_tiny_fp32.tflite",
                     "--num_threads=1", "--num_runs=3", "--warmup_runs=1", "--min_secs=0", "--warmup_min_secs=0",
                     "--use_gpu=true", "--use_xnnpack=false"]]
    m = r.models[0].measurements[0]
    assert m.latency.median_ms is None and m.ratio_of == "mean" and m.latency.mean_ms == pytest.approx(2950.34)


def test_cli_adb_nnapi_table_and_json(fake_adb, binary, tiny):
    fake_adb.set(bench_output=FIXTURES / "gpu_info_prefix.txt")
    res = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--adb", "--benchmark-binary", str(binary),
                                    "--use-nnapi", "--threads", "2", "--json"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[2].startswith("| tiny_fp32.tflite") and " 115.3 |" in lines[2] and "132.8" in lines[2]
    out = json.loads(lines[-1])
    assert out["target"] == "adb" and out["settings"]["accelerator"] == "nnapi"
    assert "--use_nnapi=true" in out["environment"]["commands"][-2]
    assert out["environment"]["commands"][-1].endswith(f"shell rm -rf {REMOTE_DIR}")
    assert any("completely executed by the delegate" in n for n in out["notes"])


# --- clear errors -------------------------------------------------------------------------

def _cli(args):
    return CliRunner().invoke(main, ["bench"] + [str(a) for a in args])


def test_error_adb_missing(tmp_path, monkeypatch, binary, tiny):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res = _cli([tiny["fp32"], "--adb", "--benchmark-binary", binary])
    assert res.exit_code == 2 and res.stderr.strip().splitlines()[-1] == (
        "error: adb not found on PATH: install Android SDK platform-tools and put adb on PATH")


def test_error_no_device(fake_adb, binary, tiny):
    fake_adb.set(devices="")
    res = _cli([tiny["fp32"], "--adb", "--benchmark-binary", binary])
    assert res.exit_code == 2 and "error: no Android device attached" in res.stderr
    assert fake_adb.calls() == [["devices"]]  # nothing pushed


def test_error_several_devices_without_serial(fake_adb, binary, tiny):
    fake_adb.set(devices="emulator-5554\tdevice\nR58M1234ABC\tdevice\n")
    res = _cli([tiny["fp32"], "--adb", "--benchmark-binary", binary])
    assert res.exit_code == 2
    assert "error: 2 devices attached (emulator-5554, R58M1234ABC): choose one with --serial" in res.stderr


def test_error_serial_not_attached_or_unauthorized(fake_adb, binary, tiny):
    fake_adb.set(devices="emulator-5554\tunauthorized\n")
    with pytest.raises(DeviceError, match=r"device XYZ is not attached \(adb devices lists: emulator-5554\)"):
        run_adb_bench([tiny["fp32"]], binary, serial="XYZ")
    with pytest.raises(DeviceError, match="emulator-5554 is unauthorized: accept the USB debugging prompt"):
        run_adb_bench([tiny["fp32"]], binary)


def test_error_binary_not_executable_on_device_still_cleans_up(fake_adb, binary, tiny):
    fake_adb.set(bench_output=FIXTURES / "not_executable.txt", bench_rc=126)
    res = _cli([tiny["fp32"], "--adb", "--benchmark-binary", binary])
    assert res.exit_code == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: benchmark binary {binary} is not executable on device R58M1234ABC (arm64-v8a): ")
    assert "not executable: 64-bit ELF file" in last
    assert fake_adb.calls()[-1] == ["-s", "R58M1234ABC", "shell", "rm", "-rf", REMOTE_DIR]


def test_error_binary_cannot_link_on_device(fake_adb, binary, tiny, tmp_path):
    out = tmp_path / "link.txt"
    out.write_text(f'CANNOT LINK EXECUTABLE "{REMOTE_BINARY}": library "libc++_shared.so" not found\n')
    fake_adb.set(bench_output=out, bench_rc=1)
    with pytest.raises(DeviceError, match=r"is not executable on device R58M1234ABC.*libc\+\+_shared"):
        run_adb_bench([tiny["fp32"]], binary)


def test_error_benchmark_model_fails_on_model(fake_adb, binary, tiny, tmp_path):
    out = tmp_path / "fail.txt"
    out.write_text("INFO: STARTING!\nERROR: Failed to apply GPU delegate.\nERROR: Benchmarking failed.\n")
    fake_adb.set(bench_output=out, bench_rc=1)
    with pytest.raises(DeviceError, match=r"benchmark_model failed on tiny_fp32.tflite \(exit status 1\): "
                                          "ERROR: Benchmarking failed."):
        run_adb_bench([tiny["fp32"]], binary, accelerator="gpu")
    assert fake_adb.calls()[-1][-3:] == ["rm", "-rf", REMOTE_DIR]


def test_error_local_binary(tmp_path, fake_adb, tiny):
    with pytest.raises(ConfigError, match="--benchmark-binary: file not found"):
        run_adb_bench([tiny["fp32"]], tmp_path / "nope")
    script = tmp_path / "benchmark_model"
    script.write_text("<html>a download page, not a binary</html>")
    with pytest.raises(ConfigError, match="not an executable \\(ELF\\) file"):
        run_adb_bench([tiny["fp32"]], script)
    res = _cli([tiny["fp32"], "--adb"])
    assert res.exit_code == 2 and "--adb needs --benchmark-binary" in res.stderr
    assert fake_adb.calls() == []  # nothing reached adb


def test_error_bad_model_before_adb(fake_adb, binary, tiny, tmp_path):
    with pytest.raises(ModelFileError, match="dynamic shape"):
        run_adb_bench([tiny["dynamic"]], binary)
    assert fake_adb.calls() == []
