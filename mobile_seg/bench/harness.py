"""Latency of .tflite models on this machine with ai-edge-litert, models interleaved.

Method (what `run_bench` measures):
- Every (model, thread count) pair gets its own interpreter, built up front; `init_ms` is
  interpreter construction + `allocate_tensors` (where LiteRT applies XNNPACK).
- Each interpreter gets one random input of its own shape, dtype and quantisation
  (`TFLiteModel.random_input`), set once. The first `invoke()` is timed apart (`first_ms`).
- Then `warmup` untimed rounds and `runs` timed rounds. A round runs every model once at
  every thread count; the model order rotates from round to round. A burst of machine
  noise (another job, thermal throttling) therefore lands on all models alike, and the
  ratios between models stay meaningful even when absolute figures wander.
- Only `interpreter.invoke()` is timed (`perf_counter_ns`), as TFLite's benchmark_model
  and `ai_edge_litert.tools.benchmark_litert_model` do; the garbage collector is off
  while timing.
- Peak RSS per (model, threads) comes from a fresh process each (see `memory.py`), run
  before the timing so those processes do not compete with it.
"""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mobile_seg.bench.device import host_environment
from mobile_seg.bench.results import BenchResult, Measurement, ModelInfo, ModelResult
from mobile_seg.bench.stats import latency_stats
from mobile_seg.errors import ConfigError


def parse_threads(spec: str | Sequence[int]) -> list[int]:
    """'1,2' → [1, 2]; raises ConfigError for anything that is not positive integers."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        threads = [int(str(t).strip()) for t in items if str(t).strip()]
    except ValueError:
        raise ConfigError(f"--threads: expected comma-separated positive integers, got {spec!r}") from None
    if not threads or any(t < 1 for t in threads):
        raise ConfigError(f"--threads: expected comma-separated positive integers, got {spec!r}")
    return list(dict.fromkeys(threads))


def interleaved_order(n_models: int, threads: Sequence[int], rounds: int):
    """Yield (round, threads, model index) in run order: each round runs every model once at
    every thread count, and the model that goes first rotates from round to round."""
    for r in range(rounds):
        for t in threads:
            for k in range(n_models):
                yield r, t, (k + r) % n_models


def display_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File names, or paths where two files share a name."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [os.path.relpath(p) for p in paths]


def model_info(model, name: str) -> ModelInfo:
    """The static description of a loaded `TFLiteModel`."""
    meta = model.metadata or {}
    scale, zero = model.input_quantization
    return ModelInfo(
        path=str(model.path), name=name, input_shape=list(model.input_shape),
        input_dtype=model.input_dtype.name,
        input_quantization=[scale, zero] if scale > 0 else None,
        size_bytes=model.size_bytes, census=model.op_census().to_dict(),
        metadata_name=meta.get("name"), variant=meta.get("variant"), metrics=model.metrics or None,
    )


def _load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_bench(paths: Sequence[str | os.PathLike], threads: Sequence[int] = (1,), runs: int = 100,
              warmup: int = 10, xnnpack: bool = True, memory: bool = True, seed: int = 0,
              progress: Callable[[str], None] | None = None, duration: float | None = None,
              cores: tuple[int, ...] = ()) -> BenchResult:
    """Benchmark `paths` (the first is the reference) on this machine; see the module doc.

    `duration` (seconds): keep timing rounds until that long has passed instead of `runs`
    rounds; every run's start time is kept (`result.series`) and each measurement gets a
    `sustained` first-vs-last-tenth drift. `cores`: pin the process to those cores for the
    run (the previous affinity is restored afterwards).

    Raises ModelFileError for a missing file, a file that is not a .tflite, a model LiteRT
    cannot load, or one with a dynamic input shape, before anything is timed.
    """
    from mobile_seg.bench.device import pinned
    with pinned(tuple(cores)) as affinity:
        return _run_bench(paths, threads, runs, warmup, xnnpack, memory, seed, progress, duration, cores,
                          affinity)


def _run_bench(paths, threads, runs, warmup, xnnpack, memory, seed, progress, duration, cores,
               affinity) -> BenchResult:
    from mobile_seg.tflite_model import TFLiteModel

    say = progress or (lambda msg: None)
    if not paths:
        raise ConfigError("bench: give at least one .tflite model")
    if runs < 1 or warmup < 0:
        raise ConfigError("bench: --runs must be ≥ 1 and --warmup ≥ 0")
    threads = parse_threads(threads)
    names = display_names(paths)
    rng = np.random.default_rng(seed)
    from mobile_seg.bench.device import host_record
    from mobile_seg.bench.sustained import check_duration, drift
    check_duration(duration)

    # Build every interpreter first: a bad file fails before anything is timed.
    runners = {}  # (model index, threads) -> TFLiteModel
    results = []
    for i, path in enumerate(paths):
        for t in threads:
            runners[i, t] = TFLiteModel(path, num_threads=t, xnnpack=xnnpack)
        results.append(ModelResult(model_info(runners[i, threads[0]], names[i])))
    for m in runners.values():
        m.interpreter.set_tensor(m.input["index"], m.random_input(rng))

    peaks = {}
    if memory:
        from mobile_seg.bench.memory import measure_peak_rss
        say(f"bench: measuring peak RSS in a fresh process per model and thread count ({len(runners)})")
        for (i, t) in runners:
            peaks[i, t] = measure_peak_rss(paths[i], t, xnnpack=xnnpack)

    first = {}
    for key, m in runners.items():
        start = time.perf_counter_ns()
        m.interpreter.invoke()
        first[key] = (time.perf_counter_ns() - start) / 1e6

    keys = [(i, t) for t in threads for i in range(len(paths))]
    samples = {key: [] for key in keys}
    starts = {key: [] for key in keys}
    timed = f"{duration:g} s of timed rounds" if duration else f"{runs} timed rounds"
    say(f"bench: {len(paths)} model(s) x threads {','.join(map(str, threads))}: "
        f"{warmup} warm-up + {timed}, interleaved")
    load_before = _load_avg()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    rounds = warmup + runs if duration is None else 2**62
    t0 = deadline = None
    try:
        for r, t, i in interleaved_order(len(paths), threads, rounds):
            if r >= warmup and t0 is None:
                t0 = time.perf_counter_ns()
                deadline = t0 + int(duration * 1e9) if duration else None
            if deadline is not None and t == threads[0] and i == r % len(paths) and \
                    time.perf_counter_ns() >= deadline:
                break  # only at a round boundary: every model keeps the same number of runs
            invoke = runners[i, t].interpreter.invoke
            start = time.perf_counter_ns()
            invoke()
            elapsed = time.perf_counter_ns() - start
            if r >= warmup:
                samples[i, t].append(elapsed / 1e9)
                starts[i, t].append((start - t0) / 1e9)
    finally:
        if gc_was_enabled:
            gc.enable()
    load_after = _load_avg()

    for (i, t) in keys:
        peak = peaks.get((i, t), {})
        extra = {"memory_method": peak["method"]} if peak.get("method") else {}
        if peak.get("error"):
            extra["memory_error"] = peak["error"]
        if duration:
            extra["sustained"] = drift(starts[i, t], [s * 1e3 for s in samples[i, t]]).to_dict()
        results[i].measurements.append(Measurement(
            threads=t, latency=latency_stats(samples[i, t]), init_ms=runners[i, t].init_ms,
            first_ms=first[i, t], peak_rss_mb=peak.get("peak_rss_mb"), extra=extra))

    env = host_environment()
    env.update({"load_avg_before": load_before, "load_avg_after": load_after})
    env["device"] = host_record(xnnpack, affinity, pinned=bool(cores)).to_dict()
    settings = {"threads": threads, "runs": runs if duration is None else len(samples[keys[0]]),
                "warmup": warmup, "xnnpack": xnnpack, "seed": seed, "interleaved": True, "memory": memory,
                "duration": duration, "cores": list(cores)}
    result = BenchResult("host", settings, env, results)
    if duration:
        result.series = {f"{names[i]} ({t} thr)": (starts[i, t], [s * 1e3 for s in samples[i, t]])
                         for (i, t) in keys}
    result.assign_ratios()
    result.notes = host_notes(result)
    return result


def host_notes(result: BenchResult) -> list[str]:
    s, env = result.settings, result.environment
    timed = f"{s['runs']} timed rounds"
    if s.get("duration"):
        timed = f"{s['runs']} timed rounds in a sustained {s['duration']:g} s run"
    notes = [
        f"reference: {result.models[0].info.name}; vs ref = median latency / the reference's median "
        "at the same thread count",
        f"latency: invoke() only, {timed} after {s['warmup']} warm-up rounds, models "
        f"interleaved round by round; XNNPACK {'on' if s['xnnpack'] else 'off'}; ai-edge-litert "
        f"{env.get('ai_edge_litert', '?')}",
    ]
    if s.get("memory"):
        measured = [m for mr in result.models for m in mr.measurements]
        methods = sorted({m.extra["memory_method"] for m in measured if m.extra.get("memory_method")})
        if methods:
            notes.append("peak RSS: resident memory added by loading and running the model, each in a "
                         f"fresh process ({'; '.join(methods)})")
        for mr in result.models:
            for m in mr.measurements:
                if m.extra.get("memory_error"):
                    notes.append(f"peak RSS of {mr.info.name} ({m.threads} thread(s)) not measured: "
                                 f"{m.extra['memory_error']}")
    load = ""
    if env.get("load_avg_before"):
        load = f", load average {env['load_avg_before'][0]:.2f} before / {env['load_avg_after'][0]:.2f} after"
    notes.append(f"host: {env.get('cpu') or env.get('machine')}, {env.get('cpu_count')} CPUs{load}")
    if env.get("device"):
        d = env["device"]
        cores = ",".join(map(str, d["cores"])) or "?"
        notes.append(f"device: {d['soc']}; {d['os']}; {d['runtime']}; accelerator {d['accelerator']}; "
                     + (f"pinned to cores {cores}" if d["pinned"] else f"cores {cores} (not pinned)"))
    for mr in result.models:
        for m in mr.measurements:
            if m.extra.get("sustained"):
                d = m.extra["sustained"]
                notes.append(f"sustained {mr.info.name} ({m.threads} thr): first tenth {d['first_ms']:.2f} ms, "
                             f"last tenth {d['last_ms']:.2f} ms, drift {d['drift_pct']:+.1f}% over "
                             f"{d['seconds']:.0f} s")
    return notes
