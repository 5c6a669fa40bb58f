"""`mobile-seg bench`: latency, size, op census and memory of .tflite models.

- `harness.run_bench`: this machine, ai-edge-litert, models interleaved round by round.
- `adb.run_adb_bench`: an Android phone through adb and TensorFlow Lite's `benchmark_model`.
- `results`: the result objects and their table / JSON / CSV forms (same for both).
- `plot.plot_bench`: latency vs accuracy (Pareto front) or latency bars.
- `profile`: per-op time (isolated ops here, benchmark_model's op profiling on a phone).
- `sustained`: `--duration` runs: first-vs-last-tenth drift, latency over time.
- `parity`: does XNNPACK / fp16 change the mask vs the CPU reference kernels.
- `device`: the device record (SoC, OS, runtime, accelerator, CPU fallback, pinned cores).

Submodules are imported on use: this package imports nothing heavy.
"""
