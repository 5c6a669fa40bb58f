"""Check `mobile-seg bench` against `python -m ai_edge_litert.tools.benchmark_litert_model`.

Both are run as the user would run them, alternately (ABBA order) so that load from
other jobs on the machine lands on both alike, on the same model and thread count with
the same run and warm-up counts. Prints one line per run and a summary: the median over
pairs of harness/tool for the median and the minimum latency, and the load average.

    .venv/bin/python experiments/compare_litert_tool.py ../shared/data/models/selfie_segmentation.tflite \
        --threads 1 --pairs 6 --runs 200 --warmup 10
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run_harness(model: str, threads: int, runs: int, warmup: int) -> dict:
    cmd = [str(BIN / "mobile-seg"), "bench", model, "--threads", str(threads), "--runs", str(runs),
           "--warmup", str(warmup), "--no-memory", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    lat = json.loads(out.strip().splitlines()[-1])["models"][0]["results"][0]["latency"]
    return {"median": lat["median_ms"], "min": lat["min_ms"], "mean": lat["mean_ms"]}


def run_tool(model: str, threads: int, runs: int, warmup: int) -> dict:
    cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
           f"--num_threads={threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def grab(label):
        return float(re.search(rf"Inference \({label}\):\s+([\d.]+) ms", out).group(1))

    return {"median": grab("median"), "min": grab("min"), "mean": grab("avg")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    load = [os.getloadavg()[0]]
    ratios = {"median": [], "min": []}
    print(f"{'pair':>4} {'harness median':>15} {'tool median':>12} {'harness min':>12} {'tool min':>9}")
    for p in range(args.pairs):
        order = ("harness", "tool") if p % 2 == 0 else ("tool", "harness")
        got = {}
        for who in order:
            fn = run_harness if who == "harness" else run_tool
            got[who] = fn(args.model, args.threads, args.runs, args.warmup)
        load.append(os.getloadavg()[0])
        for k in ratios:
            ratios[k].append(got["harness"][k] / got["tool"][k])
        print(f"{p:>4} {got['harness']['median']:>12.3f} ms {got['tool']['median']:>9.3f} ms "
              f"{got['harness']['min']:>9.3f} ms {got['tool']['min']:>6.3f} ms")
    print(f"harness / tool over {args.pairs} pairs (median of per-pair ratios): "
          f"median latency {statistics.median(ratios['median']):.3f}, "
          f"min latency {statistics.median(ratios['min']):.3f}")
    print(f"{Path(args.model).name}, {args.threads} thread(s), {args.runs} runs + {args.warmup} warm-up each; "
          f"1-min load average {min(load):.2f}–{max(load):.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
