"""Latency on an Android phone: adb + TensorFlow Lite's `benchmark_model`, parsed into the
same `BenchResult` as the host harness.

We never download anything: the user supplies the `benchmark_model` binary built for the
phone (TensorFlow publishes prebuilt `android_aarch64_benchmark_model` etc.). The run:

    adb devices                                   # pick the device (or check --serial)
    adb -s S shell getprop                        # the device record: model, SoC, ABI, Android
    adb -s S shell mkdir -p /data/local/tmp/mobile-seg-bench
    adb -s S push BINARY /data/local/tmp/mobile-seg-bench/benchmark_model
    adb -s S shell chmod 755 /data/local/tmp/mobile-seg-bench/benchmark_model
    adb -s S push MODEL /data/local/tmp/mobile-seg-bench/0_MODEL.tflite   # per model
    adb -s S shell [taskset MASK] /data/local/tmp/mobile-seg-bench/benchmark_model --graph=… \
        --num_threads=N --num_runs=R --warmup_runs=W --min_secs=0 --warmup_min_secs=0 \
        [--use_gpu=true|--use_nnapi=true] [--enable_op_profiling=true --profiling_output_csv_file=…]
    adb -s S pull /data/local/tmp/mobile-seg-bench/profile_I_T.csv LOCAL_TEMP   # with --op-profile
    adb -s S shell rm -rf /data/local/tmp/mobile-seg-bench      # always, even after an error

A device that disappears mid-run (cable, adb server, reboot) is one DeviceError naming the
step; nothing is written locally until every model has run.

`--min_secs=0 --warmup_min_secs=0` make benchmark_model run exactly R timed and W warm-up
runs (by default it keeps going for at least 1 s / 0.5 s).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from mobile_seg.bench.results import BenchResult, Measurement, ModelResult
from mobile_seg.bench.stats import LatencyStats
from mobile_seg.errors import ConfigError, DeviceError

REMOTE_DIR = "/data/local/tmp/mobile-seg-bench"
REMOTE_BINARY = f"{REMOTE_DIR}/benchmark_model"
ACCELERATORS = ("cpu", "gpu", "nnapi")

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_STAT = re.compile(rf"\bcount=(\d+)((?:\s+\w+={_NUM})*)")
_FIELD = re.compile(rf"(\w+)=({_NUM})")
_MEMORY = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
                     rf"\(MB\): init=({_NUM}) overall=({_NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
_DELEGATE = re.compile(r"(?i)(applied .*delegate|executed by the delegate|delegate kernels|"
                       r"failed to apply .*delegate|replacing \d+ out of \d+ node)")
# What adb says when the device went away between two commands.
_GONE = re.compile(r"device (?:'[^']*' )?not found|device offline|no devices/emulators found|error: closed|"
                   r"device still (?:connecting|authorizing)|protocol fault", re.I)
_GETPROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_VERSION = re.compile(r"(?:TF ?Lite|LiteRT|TensorFlow Lite)[^\n]*?[Vv]ersion:? \[?v?([0-9][\w.\-]*)")
# What sh / the Android linker say when the binary cannot run on this phone.
_NOT_EXECUTABLE = ("can't execute", "cannot execute", "not executable", "exec format error",
                   "permission denied", "cannot link executable", "inaccessible or not found",
                   "syntax error", "no such file or directory")


# --- parsing ---------------------------------------------------------------------------

def parse_benchmark_output(text: str) -> dict:
    """Figures from TFLite benchmark_model output (any version from 2.3 on, with or without
    the `INFO: ` / logcat prefixes). Times in the output are microseconds; returned `*_ms`
    are milliseconds, `inference`/`warmup` keep benchmark_model's own fields (us).

    Raises ValueError when the output has no "Inference timings" line.
    """
    m = _TIMINGS.search(text)
    if not m:
        raise ValueError("no 'Inference timings in us' line in benchmark_model output")
    init_us, first_us, warm_us, infer_us = (float(g) for g in m.groups())
    stats = []
    for sm in _STAT.finditer(text):
        fields = {"count": int(sm.group(1))}
        fields.update({k: float(v) for k, v in _FIELD.findall(sm.group(2))})
        stats.append(fields)
    out = {"init_ms": init_us / 1e3, "first_ms": first_us / 1e3, "warmup_avg_ms": warm_us / 1e3,
           "inference_avg_ms": infer_us / 1e3,
           # warm-up stats come first, the timed ones last (benchmark_model prints both)
           "inference": stats[-1] if stats else None, "warmup": stats[-2] if len(stats) > 1 else None,
           "memory_init_mb": None, "memory_overall_mb": None, "memory_peak_mb": None,
           "model_size_mb": None, "delegate": []}
    if mm := _MEMORY.search(text):
        out["memory_init_mb"], out["memory_overall_mb"] = float(mm.group(1)), float(mm.group(2))
    if pm := _PEAK.search(text):
        out["memory_peak_mb"] = float(pm.group(1))
    if zm := _SIZE.search(text):
        out["model_size_mb"] = float(zm.group(1))
    for line in text.splitlines():
        if _DELEGATE.search(line):
            out["delegate"].append(re.sub(r"^.*?(INFO|WARNING|ERROR): ", "", line.strip()))
    return out


def latency_from_output(parsed: dict) -> LatencyStats:
    """benchmark_model's timed-run stats as LatencyStats (ms); p90/p99 it does not print."""
    s = parsed.get("inference") or {}
    ms = lambda k: s[k] / 1e3 if k in s else None  # noqa: E731
    return LatencyStats(runs=int(s.get("count", 0)), mean_ms=ms("avg") or parsed["inference_avg_ms"],
                        median_ms=ms("median"), p90_ms=None, p99_ms=None, min_ms=ms("min"),
                        max_ms=ms("max"), std_ms=ms("std"))


def parse_devices(text: str) -> list[tuple[str, str]]:
    """(serial, state) pairs from `adb devices` output; daemon chatter is skipped."""
    devices = []
    for line in text.splitlines():
        if "\t" not in line or line.startswith(("*", "List of devices")):
            continue
        serial, state = line.split("\t", 1)
        devices.append((serial.strip(), state.strip()))
    return devices


# --- adb ------------------------------------------------------------------------------

def parse_getprop(text: str) -> dict[str, str]:
    """`adb shell getprop` output ("[key]: [value]" lines) as a dict."""
    return {m.group(1): m.group(2) for ln in text.splitlines() if (m := _GETPROP.match(ln.strip()))}


def _gone(text: str) -> bool:
    return bool(_GONE.search(text))


class Adb:
    """Runs adb commands for one device, keeping a log of every command it sent."""

    def __init__(self, exe: str, serial: str | None = None, timeout: float = 600.0):
        self.exe, self.serial, self.timeout = exe, serial, timeout
        self.log: list[list[str]] = []

    def __call__(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [self.exe] + (["-s", self.serial] if self.serial else []) + list(args)
        self.log.append(cmd)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"adb {' '.join(args[:2])} timed out after {timeout or self.timeout:.0f} s") from None

    def check(self, *args: str) -> str:
        """Run; raise DeviceError with adb's own last line if it fails."""
        proc = self(*args)
        if proc.returncode != 0:
            msg = _last_line(proc.stderr + proc.stdout) or f"exit status {proc.returncode}"
            self.raise_if_gone(proc, args)
            raise DeviceError(f"adb {' '.join(args[:2])} failed on device {self.serial}: {msg}")
        return proc.stdout

    def raise_if_gone(self, proc: subprocess.CompletedProcess, args) -> None:
        """DeviceError when adb's answer says the device disconnected."""
        if proc.returncode != 0 and _gone((proc.stderr or "") + (proc.stdout or "")):
            msg = _last_line(proc.stderr + proc.stdout)
            raise DeviceError(f"device {self.serial} disconnected during `adb {' '.join(args[:2])}` ({msg}); "
                              "reconnect it and run again (no result was written)")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def find_adb() -> str:
    exe = shutil.which("adb")
    if exe is None:
        raise DeviceError("adb not found on PATH: install Android SDK platform-tools and put adb on PATH")
    return exe


def pick_device(adb: Adb, serial: str | None) -> str:
    """The serial to use: `serial` if it is attached and ready, else the only device."""
    proc = adb("devices", timeout=60)
    if proc.returncode != 0:
        raise DeviceError(f"adb devices failed: {_last_line(proc.stderr + proc.stdout) or proc.returncode}")
    devices = parse_devices(proc.stdout)
    ready = [s for s, state in devices if state == "device"]
    if serial is not None:
        state = dict(devices).get(serial)
        if state is None:
            listed = ", ".join(s for s, _ in devices) or "none"
            raise DeviceError(f"device {serial} is not attached (adb devices lists: {listed})")
        if state != "device":
            raise DeviceError(f"device {serial} is {state}" + _state_hint(state))
        return serial
    if not devices:
        raise DeviceError("no Android device attached (adb devices lists none): connect one with USB "
                          "debugging on")
    if len(devices) > 1:
        raise DeviceError(f"{len(devices)} devices attached ({', '.join(s for s, _ in devices)}): "
                          "choose one with --serial")
    if not ready:
        s, state = devices[0]
        raise DeviceError(f"device {s} is {state}" + _state_hint(state))
    return ready[0]


def _state_hint(state: str) -> str:
    if state == "unauthorized":
        return ": accept the USB debugging prompt on the phone"
    if state == "offline":
        return ": reconnect it or run `adb kill-server`"
    return ", not ready"


def _remote_name(index: int, path: str | os.PathLike) -> str:
    return f"{index}_" + re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name)


def benchmark_args(remote_model: str, threads: int, runs: int, warmup: int, accelerator: str,
                   xnnpack: bool, cores: tuple[int, ...] = (), profile_file: str | None = None) -> list[str]:
    """The benchmark_model command line (after `adb -s S shell`), behind `taskset MASK` when
    `cores` are given; with `profile_file`, op profiling written to that device path."""
    from mobile_seg.bench.device import cpu_mask
    pin = ["taskset", cpu_mask(cores)] if cores else []
    args = pin + [REMOTE_BINARY, f"--graph={remote_model}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0"]
    if accelerator == "gpu":
        args.append("--use_gpu=true")
    elif accelerator == "nnapi":
        args.append("--use_nnapi=true")
    if not xnnpack:
        args.append("--use_xnnpack=false")
    if profile_file:
        args += ["--enable_op_profiling=true", f"--profiling_output_csv_file={profile_file}"]
    return args


def _check_binary(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ConfigError("--benchmark-binary: file not found", path)
    if path.is_dir():
        raise ConfigError("--benchmark-binary: is a directory, expected TFLite's benchmark_model", path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"\x7fELF":
        raise ConfigError("--benchmark-binary: not an executable (ELF) file; expected TFLite's "
                          "benchmark_model built for Android", path)
    return path


def run_adb_bench(paths: Sequence[str | os.PathLike], benchmark_binary: str | os.PathLike | None,
                  serial: str | None = None, threads: Sequence[int] = (1,), runs: int = 100,
                  warmup: int = 10, accelerator: str = "cpu", xnnpack: bool = True,
                  progress: Callable[[str], None] | None = None, op_profile: bool = False,
                  cores: tuple[int, ...] = ()) -> BenchResult:
    """Benchmark `paths` on an Android device with the user's benchmark_model binary.

    Models run one after another (each benchmark_model run is a whole benchmark); the
    first model is the reference. Remote files are removed at the end, on error too.
    """
    from mobile_seg.bench.harness import display_names, model_info, parse_threads
    from mobile_seg.tflite_model import TFLiteModel

    say = progress or (lambda msg: None)
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    if not paths:
        raise ConfigError("bench: give at least one .tflite model")
    if runs < 1 or warmup < 0:
        raise ConfigError("bench: --runs must be ≥ 1 and --warmup ≥ 0")
    if benchmark_binary is None:
        raise ConfigError("--adb needs --benchmark-binary PATH: TensorFlow Lite's benchmark_model built "
                          "for the phone (we never download it)")
    threads = parse_threads(threads)
    names = display_names(paths)
    # Local checks first: a bad model or binary fails before anything touches the phone.
    infos = [model_info(TFLiteModel(p), n) for p, n in zip(paths, names)]
    binary = _check_binary(benchmark_binary)
    adb = Adb(find_adb())
    adb.serial = pick_device(adb, serial)
    from mobile_seg.bench.device import ANDROID_PROPS, android_record, parse_delegate_lines
    from mobile_seg.bench.profile import parse_op_profile
    props_proc = adb("shell", "getprop")
    adb.raise_if_gone(props_proc, ("shell", "getprop"))
    allprops = parse_getprop(props_proc.stdout)
    props = {k: next((allprops[p] for p in keys if allprops.get(p)), None) for k, keys in ANDROID_PROPS.items()}
    device = {"serial": adb.serial, "model": props["model"], "abi": props["abi"],
              "benchmark_binary": str(binary), "accelerator": accelerator}
    results = [ModelResult(info) for info in infos]
    profiles, fallback, runtime = [], {}, None
    pulled = tempfile.TemporaryDirectory(prefix="mobile-seg-adb-")
    try:
        adb.check("shell", "mkdir", "-p", REMOTE_DIR)
        say(f"bench: pushing {binary.name} and {len(paths)} model(s) to {adb.serial}:{REMOTE_DIR}")
        adb.check("push", str(binary), REMOTE_BINARY)
        adb.check("shell", "chmod", "755", REMOTE_BINARY)
        remote = []
        for i, p in enumerate(paths):
            remote.append(f"{REMOTE_DIR}/{_remote_name(i, p)}")
            adb.check("push", os.fspath(p), remote[-1])
        for t in threads:
            for i, info in enumerate(infos):
                say(f"bench: {info.name}, {t} thread(s), {accelerator} on {adb.serial}")
                remote_profile = f"{REMOTE_DIR}/profile_{i}_{t}.csv" if op_profile else None
                args = benchmark_args(remote[i], t, runs, warmup, accelerator, xnnpack, cores, remote_profile)
                proc = adb("shell", *args)
                adb.raise_if_gone(proc, ("shell", "benchmark_model"))
                parsed = _parse_run(proc, info.name, device)
                text = (proc.stdout or "") + "\n" + (proc.stderr or "")
                if runtime is None and (vm := _VERSION.search(text)):
                    runtime = vm.group(1)
                report = parse_delegate_lines(text)
                if report.lines:
                    fallback.setdefault(info.name, report.to_dict())
                if remote_profile:
                    local = Path(pulled.name) / f"profile_{i}_{t}.csv"
                    pull = adb("pull", remote_profile, str(local))
                    adb.raise_if_gone(pull, ("pull", remote_profile))
                    # builds that ignore --profiling_output_csv_file write no file: their stdout has it
                    ptext = local.read_text(errors="replace") if pull.returncode == 0 and local.exists() else ""
                    prof = (parse_op_profile(ptext, info.name, t, accelerator, parsed["inference_avg_ms"])
                            or parse_op_profile(text, info.name, t, accelerator, parsed["inference_avg_ms"]))
                    if prof is None:
                        raise DeviceError(f"benchmark_model printed no op profile for {info.name}: is the "
                                          "binary older than --enable_op_profiling?")
                    profiles.append(prof)
                extra = {"warmup_avg_ms": parsed["warmup_avg_ms"], "memory_init_mb": parsed["memory_init_mb"],
                         "memory_peak_mb": parsed["memory_peak_mb"], "delegate": parsed["delegate"]}
                results[i].measurements.append(Measurement(
                    threads=t, latency=latency_from_output(parsed), init_ms=parsed["init_ms"],
                    first_ms=parsed["first_ms"] if warmup > 0 else None,
                    peak_rss_mb=parsed["memory_overall_mb"], extra=extra))
    finally:
        pulled.cleanup()
        try:
            adb("shell", "rm", "-rf", REMOTE_DIR, timeout=60)
        except DeviceError:
            pass  # a device that went away keeps the first error
    settings = {"threads": threads, "runs": runs, "warmup": warmup, "xnnpack": xnnpack,
                "accelerator": accelerator, "interleaved": False, "op_profile": op_profile,
                "cores": list(cores)}
    accel_used = {"cpu": "cpu (XNNPACK)" if xnnpack else "cpu (no XNNPACK)", "gpu": "GPU delegate",
                  "nnapi": "NNAPI delegate"}[accelerator]
    fell_back = [name for name, f in fallback.items()
                 if f.get("cpu_ops") or f.get("cpu_nodes") or f.get("fully_delegated") is False]
    if accelerator != "cpu" and fell_back:
        accel_used += f" (partial: some ops on the CPU for {', '.join(fell_back)})"
    device["device"] = android_record(
        props, runtime=f"TFLite benchmark_model {runtime or '(version not printed)'}", accelerator=accel_used,
        cores=tuple(cores), fallback=fallback).to_dict()
    result = BenchResult("adb", settings, device, results)
    result.profiles = profiles
    result.assign_ratios()
    result.notes = adb_notes(result)
    result.environment["commands"] = [" ".join(c) for c in adb.log]
    return result


def _parse_run(proc: subprocess.CompletedProcess, name: str, device: dict) -> dict:
    text = (proc.stdout or "") + "\n" + (proc.stderr or "")
    try:
        return parse_benchmark_output(text)
    except ValueError:
        pass
    # sh and the linker name the binary in their complaint; benchmark_model's own errors do not.
    about_binary = [ln.lower() for ln in text.splitlines() if REMOTE_BINARY in ln]
    if proc.returncode in (126, 127) or any(p in ln for ln in about_binary for p in _NOT_EXECUTABLE):
        abi = f" ({device['abi']})" if device.get("abi") else ""
        raise DeviceError(f"benchmark binary {device['benchmark_binary']} is not executable on device "
                          f"{device['serial']}{abi}: {_last_line(text)}; use the benchmark_model build "
                          "for this phone's ABI") from None
    raise DeviceError(f"benchmark_model failed on {name} (exit status {proc.returncode}): "
                      f"{_last_line(text) or 'no output'}") from None


def adb_notes(result: BenchResult) -> list[str]:
    s, d = result.settings, result.environment
    accel = {"cpu": "CPU" + (" (XNNPACK)" if s["xnnpack"] else " (no XNNPACK)"), "gpu": "GPU delegate",
             "nnapi": "NNAPI delegate"}[s["accelerator"]]
    ratio_of = {m.ratio_of for mr in result.models for m in mr.measurements if m.ratio_of}
    basis = "median" if ratio_of == {"median"} else "median where benchmark_model prints one, else mean"
    notes = [
        f"reference: {result.models[0].info.name}; vs ref = {basis} latency / the reference's at the same "
        "thread count",
        f"latency: TFLite benchmark_model on the phone, {s['runs']} timed runs after {s['warmup']} warm-up "
        f"runs per model, models one after another; {accel}; p90/p99: benchmark_model does not report them",
        "peak RSS: benchmark_model's 'memory footprint delta from the start of the tool', overall",
        f"device: {d.get('model') or '?'} ({d.get('abi') or '?'}), serial {d['serial']}",
    ]
    rec = d.get("device")
    if rec:
        cores = ",".join(map(str, rec["cores"]))
        notes.append(f"device record: {rec['model'] or '?'}; SoC {rec['soc'] or '?'}; {rec['os'] or 'Android ?'}; "
                     f"{rec['runtime']}; accelerator {rec['accelerator']}; "
                     + (f"pinned to cores {cores} (taskset)" if rec["pinned"] else "cores not pinned"))
    for mr in result.models:
        lines = dict.fromkeys(line for m in mr.measurements for line in m.extra.get("delegate") or [])
        notes.extend(f"{mr.info.name}: {line}" for line in lines)
        fb = (rec or {}).get("fallback", {}).get(mr.info.name)
        if fb and fb.get("cpu_ops"):
            notes.append(f"{mr.info.name}: fell back to the CPU: {', '.join(fb['cpu_ops'])}")
    return notes
