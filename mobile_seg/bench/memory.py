"""Peak resident memory added by loading and running one model, measured in a fresh process.

Why a subprocess: in the benchmarking process every model is loaded at once, and freed
memory is reused by the allocator, so per-model deltas there would be meaningless. Here
each (model, threads) pair gets its own Python process that imports everything first,
then resets the kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs`, Linux ≥ 4.0),
records VmRSS, loads the model, runs it, and reads VmHWM. The figure is
`VmHWM - VmRSS before loading`: interpreter, tensor arena, XNNPACK packed weights and
thread pool, and the model bytes we keep in memory. Where the counter cannot be reset the
figure is an upper bound (it may include the import peak); `method` says which.

Run as `python -m mobile_seg.bench.memory MODEL --threads N [--no-xnnpack] [--runs K]`;
prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_here(path: str, threads: int, xnnpack: bool, runs: int) -> dict:
    """Load and run `path` in this process; return the peak RSS it added (MiB)."""
    import ai_edge_litert.interpreter  # noqa: F401  (loaded before the baseline)
    from mobile_seg.tflite_model import TFLiteModel

    x_rng = np.random.default_rng(0)
    if _status_kib("VmRSS") is not None:
        reset = _reset_peak()
        before = _status_kib("VmRSS")
        model = TFLiteModel(path, num_threads=threads, xnnpack=xnnpack)
        model.run(model.random_input(x_rng))
        for _ in range(runs):
            model.interpreter.invoke()
        peak, after = _status_kib("VmHWM"), _status_kib("VmRSS")
        method = "VmHWM after clear_refs reset" if reset else "VmHWM without reset (upper bound)"
        return {"peak_rss_mb": (peak - before) / 1024, "rss_after_mb": (after - before) / 1024,
                "baseline_rss_mb": before / 1024, "method": method}
    import resource  # macOS and others: ru_maxrss is a lifetime peak that cannot be reset
    scale = 1 if sys.platform == "darwin" else 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    model = TFLiteModel(path, num_threads=threads, xnnpack=xnnpack)
    model.run(model.random_input(x_rng))
    for _ in range(runs):
        model.interpreter.invoke()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return {"peak_rss_mb": (peak - before) / 2**20, "rss_after_mb": None, "baseline_rss_mb": before / 2**20,
            "method": "ru_maxrss delta (lower bound)"}


def measure_peak_rss(path: str | os.PathLike, threads: int, xnnpack: bool = True, runs: int = 5,
                     timeout: float = 300.0) -> dict:
    """Run `measure_here` in a fresh interpreter process; return its dict, or one with
    `peak_rss_mb: None` and an `error` when the child fails (never raises for that)."""
    cmd = [sys.executable, "-m", "mobile_seg.bench.memory", os.fspath(path), "--threads", str(threads),
           "--runs", str(runs)] + ([] if xnnpack else ["--no-xnnpack"])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"peak_rss_mb": None, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"peak_rss_mb": None, "error": err}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mobile_seg.bench.memory")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-xnnpack", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps(measure_here(args.model, args.threads, not args.no_xnnpack, args.runs)))


if __name__ == "__main__":
    main()
