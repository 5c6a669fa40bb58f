"""`mobile-seg bench`: latency, size, op census and memory of .tflite models.

- `harness.run_bench`: this machine, ai-edge-litert, models interleaved round by round.
- `adb.run_adb_bench`: an Android phone through adb and TensorFlow Lite's `benchmark_model`.
- `results`: the result objects and their table / JSON / CSV forms (same for both).
- `plot.plot_bench`: latency vs accuracy (Pareto front) or latency bars.

Submodules are imported on use: this package imports nothing heavy.
"""
