"""Issue 18: per-op profiles, sustained runs, delegate parity and the device record.

The adb path runs end to end against a stand-in device: a fake `adb` on PATH that keeps a
device folder on this machine (push/pull copy files, `shell` runs the command here with
/data/local/tmp mapped into it) and "executes" the pushed benchmark_model by running
`fixtures/benchmark_model/standin.py`, which really runs the model with ai-edge-litert and
answers in benchmark_model's output format. No phone is needed.
"""
from __future__ import annotations

import csv
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tiny_tflite
from mobile_seg.bench.adb import REMOTE_BINARY, REMOTE_DIR, parse_getprop, run_adb_bench
from mobile_seg.bench.device import cpu_mask, parse_cores, parse_delegate_lines
from mobile_seg.bench.parity import compare, float16_twin, parity_images
from mobile_seg.bench.profile import OpProfile, OpTime, parse_op_profile, side_by_side, single_op_models
from mobile_seg.bench.sustained import drift
from mobile_seg.cli import main
from mobile_seg.errors import ConfigError, DeviceError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
SHARED = Path(os.environ.get("MOBILE_SEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_tflite.tiny_models(tmp_path_factory.mktemp("tiny_tflite_dev"))


# --- parsing ---------------------------------------------------------------------------------

GPU_PARTIAL = textwrap.dedent("""\
    INFO: Created TensorFlow Lite delegate for GPU.
    ERROR: Following operations are not supported by GPU delegate:
    CUSTOM Convolution2DTransposeBias: Operation is not supported.
    RESIZE_BILINEAR: Max version supported: 3. Requested version 4.
    130 operations will run on the GPU, and the remaining 6 operations will run on the CPU.
    INFO: Replacing 130 out of 136 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 4 partitions for the whole graph.
    """)


def test_fallback_lines_name_the_cpu_ops():
    r = parse_delegate_lines(GPU_PARTIAL)
    assert r.cpu_ops == ("CUSTOM Convolution2DTransposeBias", "RESIZE_BILINEAR")
    assert (r.delegated, r.total, r.partitions, r.cpu_nodes) == (130, 136, 4, 6)
    assert r.delegate == "TfLiteGpuDelegateV2" and r.fell_back and r.fully_delegated is False
    assert "fell back to the CPU: CUSTOM Convolution2DTransposeBias, RESIZE_BILINEAR" in r.summary()


def test_full_delegation_and_legacy_split_line():
    full = parse_delegate_lines((FIXTURES / "gpu_info_prefix.txt").read_text())
    assert full.fully_delegated is True and not full.fell_back and full.cpu_ops == ()
    old = parse_delegate_lines("ERROR: Next operations are not supported by GPU delegate:\n"
                               "MAXIMUM: Operation is not supported.\nMEAN: Operation is not supported.\n"
                               "First 0 operations will run on the GPU, and the remaining 81 on the CPU.\n")
    assert old.cpu_ops == ("MAXIMUM", "MEAN") and old.cpu_nodes == 81 and old.fell_back
    assert parse_delegate_lines("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").fell_back is False


def test_partial_and_unused_delegate_lines():
    part = parse_delegate_lines("INFO: Explicitly applied GPU delegate, and the model graph will be partially "
                                "executed by the delegate w/ 3 delegate kernels.\n")
    assert part.fully_delegated is False and part.partitions == 3 and part.fell_back
    none = parse_delegate_lines("INFO: Though NNAPI delegate is explicitly applied, the model graph will not be "
                                "executed by the delegate.\n")
    assert none.delegate == "NNAPI delegate" and none.delegated == 0 and none.fell_back
    assert "NNAPI delegate" in none.summary()


def test_cores_and_mask():
    assert parse_cores("4-7") == (4, 5, 6, 7) and cpu_mask((4, 5, 6, 7)) == "f0"
    assert parse_cores("0,2") == (0, 2) and cpu_mask((0, 2)) == "5" and parse_cores(None) == ()
    for bad in ("7-4", "x", "-1", ","):
        with pytest.raises(ConfigError, match="--cores"):
            parse_cores(bad)


def test_parse_op_profile_run_order_and_types():
    text = ("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "============================== Run Order ==============================\n"
            "\t[node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
            "\t CONV_2D\t    0.500\t    0.400\t 40.000%\t 40.000%\t     0.000\t        1\t[stem]:0\n"
            "\t DEPTHWISE_CONV_2D\t    0.300\t    0.350\t 35.000%\t 75.000%\t     0.000\t        1\t[dw]:1\n"
            "\t CONV_2D\t    0.200\t    0.250\t 25.000%\t100.000%\t     0.000\t        1\t[proj]:2\n"
            "\n============================== Top by Computation Time ==============================\n"
            "\t CONV_2D\t    0.500\t    0.400\t 40.000%\t 40.000%\t     0.000\t        1\t[stem]:0\n")
    p = parse_op_profile(text, "m.tflite", whole_ms=1.25)
    assert [(o.op, o.name, o.avg_ms, o.first_ms) for o in p.ops] == [
        ("CONV_2D", "stem", 0.4, 0.5), ("DEPTHWISE_CONV_2D", "dw", 0.35, 0.3), ("CONV_2D", "proj", 0.25, 0.2)]
    bt = p.by_type()
    assert list(bt) == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert bt["CONV_2D"]["count"] == 2 and bt["CONV_2D"]["ms"] == pytest.approx(0.65)
    assert bt["CONV_2D"]["pct"] == pytest.approx(65.0) and p.sum_ms == pytest.approx(1.0)
    assert parse_op_profile("INFO: Inference timings in us: Init: 1") is None


def test_parse_op_profile_space_aligned_with_calls_and_start_column():
    spaced = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
              "============================== Run Order ==============================\n"
              "        [node type]     [first]     [avg ms]      [%]      [cdf%]     [mem KB]   [times called]  [Name]\n"
              "           QUANTIZE       0.199        0.203   25.000%     25.000%        0.000                1  [q]:0\n"
              "  Convolution (NHWC, QC8) DWConv    0.428     0.051   75.000%    100.000%     0.000    12  "
              "Delegate/Convolution (NHWC, QC8) DWConv:1\n")
    p = parse_op_profile(spaced)
    assert [(o.op, o.calls) for o in p.ops] == [("QUANTIZE", 1), ("Convolution (NHWC, QC8) DWConv", 12)]
    assert p.ops[1].name == "Delegate/Convolution (NHWC, QC8) DWConv:1"
    assert p.sum_ms == pytest.approx(0.203 + 12 * 0.051)
    older = ("Operator-wise Profiling Info for Regular Benchmark Runs:\nRun Order\n"
             "\t CONV_2D\t 0.066\t 87.754\t 60.957\t 2.066%\t 2.066%\t 0.000\t 1\t[conv0]:0\n")
    o = parse_op_profile(older).ops[0]
    assert (o.first_ms, o.avg_ms, o.name) == (87.754, 60.957, "conv0")
    # --profiling_output_csv_file: ", "-separated, commas in node names turned into tabs
    as_csv = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
              "============================== Run Order ==============================\n"
              "node type, first, avg_ms, %, cdf%, mem KB, times called, name\n"
              "CONV_2D, 0.5, 0.4, 80%, 80%, 0, 1, [a\tb]:0\n"
              "Convolution (NHWC, QC8) GEMM, 0.1, 0.05, 20%, 100%, 0, 2, Delegate/Convolution (NHWC\t QC8) GEMM:1\n")
    c = parse_op_profile(as_csv)
    assert [(o.op, o.avg_ms, o.calls, o.name) for o in c.ops] == [
        ("CONV_2D", 0.4, 1, "a,b"), ("Convolution (NHWC, QC8) GEMM", 0.05, 2, "Delegate/Convolution (NHWC, QC8) GEMM:1")]


def test_parse_captured_standin_run_of_mediapipe_selfie():
    """A run captured here: the stand-in on MediaPipe's selfie model, ai-edge-litert 2.3.0."""
    from mobile_seg.bench.adb import latency_from_output, parse_benchmark_output
    text = (FIXTURES / "standin_selfie_op_profile.txt").read_text()
    p = parse_benchmark_output(text)
    assert p["init_ms"] == pytest.approx(15.415) and p["inference_avg_ms"] == pytest.approx(10.1502)
    lat = latency_from_output(p)
    assert lat.runs == 50 and lat.median_ms == pytest.approx(10.253) and lat.min_ms == pytest.approx(5.834)
    prof = parse_op_profile(text, "selfie", whole_ms=p["inference_avg_ms"])
    assert len(prof.ops) == 136  # the 136 float ops of the census (fp16 weights' DEQUANTIZEs are folded)
    assert prof.ops[0].op == "CONV_2D" and prof.ops[0].name == "conv2d" and prof.ops[0].avg_ms == pytest.approx(0.310)
    bt = prof.by_type()
    assert bt["CONV_2D"]["count"] == 43 and bt["Convolution2DTransposeBias"]["count"] == 1
    assert sum(v["pct"] for v in bt.values()) == pytest.approx(100.0)
    d = parse_delegate_lines(text)
    assert d.delegate == "XNNPACK delegate" and not d.fell_back


def test_side_by_side_table():
    a = OpProfile("a.tflite", "x", (OpTime(0, "CONV_2D", "c", 3.0), OpTime(1, "ADD", "s", 1.0)), whole_ms=5.0)
    b = OpProfile("b.tflite", "x", (OpTime(0, "CONV_2D", "c", 1.0), OpTime(1, "LOGISTIC", "l", 1.0)))
    header, rows = side_by_side([a, b])
    assert header == ["op type", "a n", "a ms", "a %", "b n", "b ms", "b %"]
    assert rows[0] == ["CONV_2D", "1", "3.000", "75.0", "1", "1.000", "50.0"]
    assert rows[1][0] == "LOGISTIC" and rows[1][1:4] == ["-", "-", "-"]
    assert rows[-2] == ["sum of ops", "2", "4.000", "100.0", "2", "2.000", "100.0"]
    assert rows[-1][0] == "whole model, median" and rows[-1][2] == "5.000" and rows[-1][3] == "sum/this 0.80"
    assert rows[-1][5] == "-"


def test_drift_first_vs_last_tenth():
    t = np.linspace(0, 100, 1001)
    v = np.where(t < 50, 10.0, 13.0)
    d = drift(t, v)
    assert (d.first_ms, d.last_ms, d.runs) == (10.0, 13.0, 1001)
    assert d.drift_pct == pytest.approx(30.0) and d.seconds == pytest.approx(100.0)
    assert drift([0.0], [4.0]).drift_pct == 0.0


def test_compare_masks_and_probabilities():
    r = [np.array([[0.9, 0.9], [0.1, 0.1]], np.float32), np.zeros((2, 2), np.float32)]
    c = [np.array([[0.9, 0.4], [0.1, 0.1]], np.float32), np.zeros((2, 2), np.float32)]
    out = compare(c, r)
    assert out["iou_mean"] == pytest.approx(0.75) and out["iou_min"] == pytest.approx(0.5)
    assert out["max_abs_diff"] == pytest.approx(0.5) and out["mean_abs_diff"] == pytest.approx(0.0625)


# --- real models --------------------------------------------------------------------------------

def test_single_op_models_cover_the_graph(tiny):
    from mobile_seg.tflite_model import TFLiteModel
    singles = single_op_models(Path(tiny["int8"]).read_bytes())
    census = TFLiteModel(tiny["int8"]).op_census().to_dict()
    assert len(singles) == census["int8"] + census["float"]
    assert [op for _, op, _, _ in singles] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D",
                                               "RESIZE_BILINEAR"]
    assert [k for k, _, _, _ in singles] == [0, 1, 2, 3, 4]


def test_fp16_twin_of_a_float_model(tiny):
    from mobile_seg.tflite_model import TFLiteModel
    content = Path(tiny["fp32"]).read_bytes()
    twin = float16_twin(content)
    from mobile_seg.tflite_model import op_census
    before, after = op_census(content).to_dict(), op_census(twin).to_dict()
    # 4 kernels + 3 biases: the stem and depthwise convolutions share one zero-bias tensor
    assert after["by_op"]["DEQUANTIZE (weights)"] == 7
    assert after["float"] == before["float"] == 5
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    ref, half = TFLiteModel(tiny["fp32"]), TFLiteModel(_write(twin))
    d = np.abs(ref.run(x) - half.run(x))
    assert 0 < d.max() < 1e-2  # fp16 rounding of the weights: visible, small
    assert float16_twin(Path(tiny["int8"]).read_bytes()) is None
    selfie = SHARED / "models" / "selfie_segmentation.tflite"
    if selfie.exists():  # MediaPipe's weights are fp16 already
        assert float16_twin(selfie.read_bytes()) is None


def _write(content: bytes) -> Path:
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="fp16_twin_")) / "twin.tflite"
    path.write_bytes(content)
    return path


def test_parity_images_voc_and_errors(tmp_path):
    files = parity_images(SHARED / "portraits", 3)
    assert len(files) == 3 and all(f.parent.name == "JPEGImages" for f in files)
    with pytest.raises(ConfigError, match="not a folder"):
        parity_images(tmp_path / "nope", 3)
    with pytest.raises(ConfigError, match="no images"):
        parity_images(tmp_path, 3)


def test_cli_host_sustained_profile_parity_json(tiny, tmp_path):
    plot, prof = tmp_path / "sus.png", tmp_path / "ops.csv"
    res = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), str(tiny["int8"]), "--no-memory", "--warmup", "1",
                                    "--duration", "1", "--plot", str(plot), "--op-profile", "--runs", "5",
                                    "--profile-csv", str(prof), "--parity-data", str(SHARED / "portraits"),
                                    "--parity-images", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    m = out["models"][0]["results"][0]
    assert m["sustained"]["runs"] == m["latency"]["runs"] > 10 and m["sustained"]["seconds"] > 0.5
    assert out["settings"]["duration"] == 1.0 and out["plot"]["kind"] == "sustained" and plot.stat().st_size > 1000
    dev = out["environment"]["device"]
    assert dev["kind"] == "host" and dev["accelerator"] == "cpu (XNNPACK)" and dev["cores"]
    ops = out["op_profile"]
    assert [p["model"] for p in ops] == ["tiny_fp32.tflite", "tiny_int8.tflite"]
    assert len(ops[1]["ops"]) == 5 and ops[1]["sum_ms"] > 0
    rows = list(csv.DictReader(prof.open()))
    assert len(rows) == sum(len(p["ops"]) for p in ops)
    par = {(r["model"], r["path"]): r for r in out["parity"]["rows"]}
    assert par["tiny_fp32.tflite", "xnnpack"]["images"] == 2
    assert 0.0 <= par["tiny_fp32.tflite", "fp16"]["max_abs_diff"] < 0.05
    assert par["tiny_int8.tflite", "xnnpack"]["iou_mean"] > 0.5
    assert "| op type " in res.stdout and "mask IoU mean" in res.stdout


def test_host_cores_pinned_for_the_run_then_restored(tiny):
    from mobile_seg.bench.harness import run_bench
    before = os.sched_getaffinity(0)
    r = run_bench([tiny["int8"]], runs=3, warmup=1, memory=False, cores=(0,))
    dev = r.environment["device"]
    assert dev["cores"] == [0] and dev["pinned"] is True and r.settings["cores"] == [0]
    assert any("pinned to cores 0" in n for n in r.notes)
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ConfigError, match="--cores: this machine has cores 0-"):
        run_bench([tiny["int8"]], runs=1, memory=False, cores=(4096,))
    assert os.sched_getaffinity(0) == before


def test_cli_errors_before_timing(tiny, tmp_path):
    r = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--duration", "0"])
    assert r.exit_code == 2 and "error: --duration: expected a number of seconds > 0" in r.stderr
    r = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--parity-data", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.stderr.strip().endswith("--parity-data: not a folder")
    r = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--profile-csv", str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "--profile-csv: only with --op-profile" in r.stderr
    r = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--adb", "--duration", "5"])
    assert r.exit_code == 2 and "error: --duration: host only (not with --adb)" in r.stderr
    r = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--cores", "3-1"])
    assert r.exit_code == 2 and "error: --cores: expected core numbers like 4-7 or 0,2, got '3-1'" in r.stderr


# --- the stand-in device --------------------------------------------------------------------------

FAKE_ADB = textwrap.dedent('''\
    #!{python}
    """Fake adb over a device folder on this machine; see tests/test_bench_device.py."""
    import json, os, shutil, subprocess, sys
    args = sys.argv[1:]
    root = os.environ["FAKE_DEVICE_ROOT"]
    log = os.environ["FAKE_ADB_LOG"]
    with open(log, "a") as f:
        f.write(json.dumps(args) + "\\n")
    calls = sum(1 for _ in open(log))
    gone_after = int(os.environ.get("FAKE_ADB_GONE_AFTER", "0"))
    if gone_after and calls > gone_after:
        sys.stderr.write("adb: device 'R58M1234ABC' not found\\n")
        sys.exit(1)
    if args and args[0] == "-s":
        args = args[2:]
    dev = lambda p: root + p if p.startswith("/data/") else p
    if args == ["devices"]:
        print("List of devices attached\\nR58M1234ABC\\tdevice")
    elif args == ["shell", "getprop"]:
        print("[ro.product.model]: [Pixel 7]\\n[ro.product.manufacturer]: [Google]\\n"
              "[ro.soc.manufacturer]: [Google]\\n[ro.soc.model]: [GS201]\\n[ro.product.cpu.abi]: [arm64-v8a]\\n"
              "[ro.build.version.release]: [14]\\n[ro.build.version.sdk]: [34]")
    elif args[0] == "push":
        os.makedirs(os.path.dirname(dev(args[2])), exist_ok=True)
        shutil.copy(args[1], dev(args[2]))
        print(args[1] + ": 1 file pushed, 0 skipped.")
    elif args[0] == "pull":
        if not os.path.exists(dev(args[1])):
            sys.stderr.write("adb: error: failed to stat remote object '" + args[1] + "': No such file or directory\\n")
            sys.exit(1)
        shutil.copy(dev(args[1]), args[2])
        print(args[1] + ": 1 file pulled, 0 skipped.")
    elif args[:3] == ["shell", "mkdir", "-p"]:
        os.makedirs(dev(args[3]), exist_ok=True)
    elif args[:3] == ["shell", "rm", "-rf"]:
        shutil.rmtree(dev(args[3]), ignore_errors=True)
    elif args[:2] == ["shell", "chmod"]:
        os.chmod(dev(args[3]), int(args[2], 8))
    elif args[0] == "shell":
        cmd = args[1:]
        if cmd[0] == "taskset":
            cmd = cmd[2:]
        binary = dev(cmd[0])
        if not os.access(binary, os.X_OK):
            print("/system/bin/sh: " + cmd[0] + ": can't execute: Permission denied")
            sys.exit(126)
        mapped = [a.split("=", 1)[0] + "=" + dev(a.split("=", 1)[1]) if "=" in a else a for a in cmd[1:]]
        proc = subprocess.run([sys.executable, os.environ["FAKE_DEVICE_STANDIN"]] + mapped)
        sys.exit(proc.returncode)
    else:
        sys.stderr.write("fake adb: unknown command " + " ".join(args) + "\\n")
        sys.exit(1)
''')


@pytest.fixture
def device(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    adb = bindir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    root = tmp_path / "phone"
    root.mkdir()
    log = tmp_path / "adb_log.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DEVICE_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_DEVICE_STANDIN", str(FIXTURES / "standin.py"))
    binary = tmp_path / "android_aarch64_benchmark_model"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 57)

    class Device:
        path, folder = binary, root

        @staticmethod
        def calls():
            return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    return Device


def test_fake_device_push_run_pull_parse(device, tiny):
    r = run_adb_bench([tiny["fp32"], tiny["int8"]], device.path, runs=20, warmup=2, op_profile=True, cores=(4, 5, 6, 7))
    calls = device.calls()
    s = ["-s", "R58M1234ABC"]
    assert calls[:5] == [["devices"], s + ["shell", "getprop"], s + ["shell", "mkdir", "-p", REMOTE_DIR],
                         s + ["push", str(device.path), REMOTE_BINARY], s + ["shell", "chmod", "755", REMOTE_BINARY]]
    runs = [c for c in calls if REMOTE_BINARY in c and c[2:4] == ["shell", "taskset"]]
    assert len(runs) == 2 and all(c[4] == "f0" for c in runs)
    assert f"--profiling_output_csv_file={REMOTE_DIR}/profile_1_1.csv" in runs[1]
    pulls = [c for c in calls if c[2:3] == ["pull"]]
    assert [c[3] for c in pulls] == [f"{REMOTE_DIR}/profile_0_1.csv", f"{REMOTE_DIR}/profile_1_1.csv"]
    assert calls[-1] == s + ["shell", "rm", "-rf", REMOTE_DIR]
    assert not (device.folder / REMOTE_DIR.lstrip("/")).exists()  # cleaned up on the device
    m = r.models[1].measurements[0]
    assert m.latency.runs == 20 and 0 < m.latency.min_ms <= m.latency.median_ms <= m.latency.max_ms
    assert m.init_ms > 0 and m.first_ms > 0
    assert [len(p.ops) for p in r.profiles] == [5, 5] and r.profiles[1].ops[1].op == "DEPTHWISE_CONV_2D"
    assert all(o.avg_ms > 0 for p in r.profiles for o in p.ops)
    assert r.profiles[1].whole_ms == pytest.approx(m.latency.mean_ms)
    rec = r.environment["device"]
    assert rec["model"] == "Google Pixel 7" and rec["soc"] == "Google GS201" and rec["os"] == "Android 14 (SDK 34)"
    assert rec["cores"] == [4, 5, 6, 7] and rec["pinned"] and rec["accelerator"] == "cpu (XNNPACK)"
    assert rec["fallback"]["tiny_int8.tflite"]["cpu_ops"] == []


def test_cli_adb_op_profile_csv_and_json_on_fake_device(device, tiny, tmp_path):
    prof = tmp_path / "ops.csv"
    res = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), str(tiny["int8"]), "--adb", "--benchmark-binary",
                                    str(device.path), "--runs", "5", "--warmup", "1", "--op-profile",
                                    "--profile-csv", str(prof), "--cores", "0-1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [len(p["ops"]) for p in out["op_profile"]] == [5, 5]
    assert out["op_profile"][0]["source"] == "benchmark_model op profiling"
    rows = list(csv.DictReader(prof.open()))
    assert len(rows) == 10 and {r["model"] for r in rows} == {"tiny_fp32.tflite", "tiny_int8.tflite"}
    assert sum(float(r["pct"]) for r in rows if r["model"] == "tiny_int8.tflite") == pytest.approx(100.0)
    assert out["environment"]["device"]["cores"] == [0, 1]
    assert any(" -s R58M1234ABC shell taskset 3 " in c for c in out["environment"]["commands"])
    assert "| op type" in res.stdout and "device record: Google Pixel 7; SoC Google GS201; Android 14" in res.stdout


def test_profile_from_stdout_when_the_build_writes_no_file(device, tiny, monkeypatch):
    from mobile_seg.bench import adb as adb_mod
    real = adb_mod.benchmark_args

    def no_file_flag(*args, **kwargs):  # an older build: prints the profile, writes no file
        return [a for a in real(*args, **kwargs) if not a.startswith("--profiling_output_csv_file=")]
    monkeypatch.setattr(adb_mod, "benchmark_args", no_file_flag)
    r = run_adb_bench([tiny["int8"]], device.path, runs=3, warmup=1, op_profile=True)
    assert [o.op for o in r.profiles[0].ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D",
                                                 "RESIZE_BILINEAR"]
    assert [c[2] for c in device.calls() if len(c) > 2].count("pull") == 1  # tried, failed, fell back


def test_fake_device_gpu_fallback_is_reported(device, tiny, monkeypatch):
    monkeypatch.setenv("FAKE_GPU_UNSUPPORTED", "RESIZE_BILINEAR,DEPTHWISE_CONV_2D")
    r = run_adb_bench([tiny["int8"]], device.path, runs=3, warmup=1, accelerator="gpu")
    fb = r.environment["device"]["fallback"]["tiny_int8.tflite"]
    assert fb["cpu_ops"] == ["DEPTHWISE_CONV_2D", "RESIZE_BILINEAR"] and fb["cpu_nodes"] == 2
    assert (fb["delegated"], fb["total"], fb["partitions"]) == (3, 5, 3)
    assert r.environment["device"]["accelerator"] == "GPU delegate (partial: some ops on the CPU for tiny_int8.tflite)"
    assert "tiny_int8.tflite: fell back to the CPU: DEPTHWISE_CONV_2D, RESIZE_BILINEAR" in r.notes


def test_fake_device_disconnects_mid_run(device, tiny, tmp_path, monkeypatch):
    # devices, getprop, mkdir, push binary, chmod, push model, first benchmark run: gone from call 8 on
    monkeypatch.setenv("FAKE_ADB_GONE_AFTER", "7")
    import tempfile
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the pulled profiles would stay
    out_csv, prof = tmp_path / "out.csv", tmp_path / "ops.csv"
    res = CliRunner().invoke(main, ["bench", str(tiny["fp32"]), "--adb", "--benchmark-binary", str(device.path),
                                    "--threads", "1,2", "--runs", "3", "--op-profile", "--profile-csv", str(prof),
                                    "--csv", str(out_csv), "--json"])
    assert res.exit_code == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: device R58M1234ABC disconnected during `adb pull ")
    assert "adb: device 'R58M1234ABC' not found" in last and "no result was written" in last
    assert not out_csv.exists() and not prof.exists()
    assert list(tmp_path.glob(".*.tmp")) == [] and res.stdout.strip() == ""
    assert list(scratch.iterdir()) == []  # the pulled-files folder is gone too
    assert device.calls()[-1][2:5] == ["shell", "rm", "-rf"]  # cleanup still attempted


def test_getprop_parse():
    assert parse_getprop("[ro.product.model]: [Pixel 7]\n[ro.x]: []\njunk\n") == {"ro.product.model": "Pixel 7",
                                                                                    "ro.x": ""}


def test_not_executable_binary_on_fake_device(device, tiny, monkeypatch):
    # A push that loses the exec bit (e.g. noexec storage): the shell's own complaint comes back.
    from mobile_seg.bench import adb as adb_mod
    orig = adb_mod.Adb.check

    def check(self, *args):
        if args[:2] == ("shell", "chmod"):
            return ""
        return orig(self, *args)
    monkeypatch.setattr(adb_mod.Adb, "check", check)
    with pytest.raises(DeviceError, match="is not executable on device R58M1234ABC \\(arm64-v8a\\)"):
        run_adb_bench([tiny["fp32"]], device.path, runs=2, warmup=1)
