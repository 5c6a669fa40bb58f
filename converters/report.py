"""The accuracy/parity report of an export: what each .tflite costs and what it loses.

For every exported variant, run with ai-edge-litert:
- file size (and its ratio to fp32),
- mIoU and person IoU on a split (default val), scored like `mobile-seg eval` (one
  streaming confusion matrix at the original mask resolution), and the drop in points vs
  the Keras float model scored the same way,
- parity: max |Δ| of the output vs the Keras float model (same head, same input tensors),
  and the fraction of pixels whose class decision differs; for qat-int8 also vs its own
  Keras QAT model (how faithful the conversion is),
- the op census from the flatbuffer (int8 vs float ops, QUANTIZE/DEQUANTIZE), with an
  "int8" file that still runs a float convolution flagged,
- single-thread latency, measured round-robin over all variants in the same run (the
  machine's load changes both sides alike).

`build_report(...)` returns the report dict; `write_report` saves report.json and
report.md atomically and records each file's metrics in its embedded metadata under
`"<dataset>/<split>"` (the one metrics schema of `mobile_seg.spec`).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from converters.export import QUANTIZED_VARIANTS, VARIANTS, head_numpy
from mobile_seg.errors import ModelFileError

REPORT_FORMAT = "mobile-seg-export-report/1"
DEFAULT_LATENCY_RUNS = 30
DEFAULT_PARITY_IMAGES = 16
WARMUP_RUNS = 3


def _person_index(labels: list[str]) -> int | None:
    return labels.index("person") if "person" in labels else None


def _class_decision(output: np.ndarray, kind: str) -> np.ndarray:
    """Per-pixel class index [H, W] from any output kind (person-probability: p >= 0.5)."""
    if kind == "category":
        return output.reshape(output.shape[:2]).astype(np.int64)
    if kind == "person-probability":
        return (output[..., 0] >= 0.5).astype(np.int64)
    return output.argmax(-1)


def _val_inputs(data, split: str, config, count: int) -> list[np.ndarray]:
    """The first `count` images of `split`, fitted to the model input (uint8 RGB)."""
    from mobile_seg.data.pipeline import iterate_examples
    from mobile_seg.spec import InputSpec
    spec = InputSpec.from_config(config)
    out = []
    for _id, image, _mask in iterate_examples(data, split):
        out.append(spec.fit(image))
        if len(out) >= count:
            break
    return out


def parity(tfl, keras_model, config, images: list[np.ndarray], kind: str, person_index: int) -> dict:
    """max |Δ| of the .tflite output vs the Keras model + head, and the class-decision mismatch."""
    import tensorflow as tf
    from mobile_seg.spec import InputSpec
    spec = InputSpec.from_config(config)
    forward = tf.function(lambda x: keras_model(x, training=False))
    max_abs = 0.0
    differ = total = 0
    for image in images:
        x = spec.normalise(image)[None]
        ref = head_numpy(forward(x).numpy(), kind, person_index)[0]
        out = tfl.run(tfl.preprocess(image))[0]
        if kind == "category":
            out = out.reshape(ref.shape)
        else:
            max_abs = max(max_abs, float(np.abs(out.astype(np.float32) - ref).max()))
        a, b = _class_decision(out, kind), _class_decision(ref, kind)
        differ += int((a != b).sum())
        total += a.size
    return {"max_abs_diff": None if kind == "category" else max_abs,
            "pixel_mismatch": differ / max(total, 1)}


def interleaved_latency(paths: dict, runs: int = DEFAULT_LATENCY_RUNS, threads: int = 1,
                        seed: int = 0, xnnpack: dict | None = None) -> dict[str, dict]:
    """Median/min/mean invoke time in ms per file, measured round-robin in one process.

    Each round invokes every model once; the order rotates from round to round so that a
    burst of load from other processes lands on all of them alike. `xnnpack` maps a name
    to False to run that file with the builtin kernels only.
    """
    import gc
    from mobile_seg.tflite_model import TFLiteModel
    rng = np.random.default_rng(seed)
    models = {}
    for name, path in paths.items():
        m = TFLiteModel(path, num_threads=threads, xnnpack=(xnnpack or {}).get(name, True))
        m.interpreter.set_tensor(m.input["index"], m.random_input(rng))
        for _ in range(WARMUP_RUNS):
            m.interpreter.invoke()
        models[name] = m
    names = list(models)
    times = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(runs):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                start = time.perf_counter()
                models[name].interpreter.invoke()
                times[name].append((time.perf_counter() - start) * 1e3)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: {"median_ms": float(np.median(t)), "min_ms": float(np.min(t)),
                   "mean_ms": float(np.mean(t)), "runs": len(t)} for name, t in times.items()}


def _iou_row(result, labels: list[str]) -> dict:
    d = result.confusion.to_dict(result.class_names)
    pi = _person_index(labels)
    person = d["per_class_iou"].get(labels[pi]) if pi is not None else None
    return {"miou": d["miou"], "person_iou": person, "pixel_accuracy": d["pixel_accuracy"]}


def build_report(files: list, data, *, float_model=None, config=None, qat_model=None,
                 labels: list[str] | None = None, split: str = "val", latency_runs: int = DEFAULT_LATENCY_RUNS,
                 parity_images: int = DEFAULT_PARITY_IMAGES, threads: int = 1, limit: int | None = None,
                 progress: bool = True, stream=None) -> dict:
    """The report dict for exported `files` (ExportedFile or .tflite paths).

    `float_model`/`config` is the Keras reference (None: no drop/parity columns);
    `qat_model` the Keras QAT model the qat-int8 file came from (optional).
    """
    from mobile_seg.evaluate import KerasPredictor, evaluate
    from mobile_seg.tflite_model import TFLiteModel
    stream = stream or sys.stderr
    paths = {}
    for f in files:
        path = Path(getattr(f, "path", f))
        meta_variant = getattr(f, "variant", None)
        if meta_variant is None:
            tfl = TFLiteModel(path)
            meta_variant = (tfl.metadata or {}).get("variant", path.stem)
        paths[meta_variant] = path
    if not paths:
        raise ModelFileError("no .tflite files to report on")
    order = sorted(paths, key=lambda v: VARIANTS.index(v) if v in VARIANTS else len(VARIANTS))
    paths = {v: paths[v] for v in order}

    def log(msg):
        if progress:
            print(msg, file=stream, flush=True)

    rows = []
    reference = None
    images = None
    if float_model is not None and config is not None:
        log(f"scoring the Keras float model on {split} ...")
        res = evaluate(data, split, predictor=KerasPredictor(float_model, config, labels), progress=False,
                       limit=limit)
        reference = {"variant": "keras-float", **_iou_row(res, res.class_names), "images": res.num_examples}
        rows.append(reference)
        images = _val_inputs(data, split, config, parity_images)
    if qat_model is not None and config is not None:
        log(f"scoring the Keras QAT model on {split} ...")
        res = evaluate(data, split, predictor=KerasPredictor(qat_model, config, labels), progress=False,
                       limit=limit)
        row = {"variant": "keras-qat", **_iou_row(res, res.class_names), "images": res.num_examples}
        if reference is not None:
            row["drop_pt"] = _drop(reference, row)
        rows.append(row)

    fp32_size = os.path.getsize(paths["fp32"]) if "fp32" in paths else None
    flags = []
    from converters.xnnpack import xnnpack_problem
    xnnpack = {variant: xnnpack_problem(path) for variant, path in paths.items()}
    for variant, path in paths.items():
        kernels = "" if xnnpack[variant] is None else " with LiteRT's reference kernels (not XNNPACK)"
        log(f"scoring {variant} ({path.name}) on {split}{kernels} ...")
        tfl = TFLiteModel(path, xnnpack=xnnpack[variant] is None)
        tfl.source = str(path)
        res = evaluate(data, split, predictor=tfl, progress=False, limit=limit)
        census = tfl.op_census()
        meta = tfl.metadata or {}
        row = {"variant": variant, "file": str(path), "size_bytes": tfl.size_bytes,
               "size_ratio_fp32": round(tfl.size_bytes / fp32_size, 4) if fp32_size else None,
               "io_type": meta.get("input", {}).get("dtype", str(tfl.input_dtype)),
               "output": tfl.output_kind, **_iou_row(res, res.class_names), "images": res.num_examples,
               "census": census.to_dict()}
        if reference is not None:
            row["drop_pt"] = _drop(reference, row)
            row.update(parity(tfl, float_model, config, images, tfl.output_kind, tfl.person_index))
        if variant == "qat-int8" and qat_model is not None and images is not None:
            p = parity(tfl, qat_model, config, images, tfl.output_kind, tfl.person_index)
            row["max_abs_diff_vs_qat_keras"] = p["max_abs_diff"]
            row["pixel_mismatch_vs_qat_keras"] = p["pixel_mismatch"]
        if variant in QUANTIZED_VARIANTS and census.float_convs:
            row["flag"] = f"{census.float_convs} float convolution(s) in an int8 model"
            flags.append(f"{variant}: {row['flag']}: {census.float_ops}")
        if xnnpack[variant] is not None:
            row["xnnpack"] = False
            row["flag"] = "; ".join(filter(None, [row.get("flag"), "XNNPACK cannot run it"]))
            flags.append(f"{variant}: {xnnpack[variant]}; scored and timed with LiteRT's reference kernels")
        rows.append(row)

    log(f"timing {', '.join(paths)}: {latency_runs} round-robin runs, {threads} thread(s) ...")
    load_before = os.getloadavg()
    lat = interleaved_latency(paths, runs=latency_runs, threads=threads,
                              xnnpack={v: problem is None for v, problem in xnnpack.items()})
    load_after = os.getloadavg()
    fp32_ms = lat.get("fp32", {}).get("median_ms")
    for row in rows:
        if row["variant"] in lat:
            row["latency_ms"] = round(lat[row["variant"]]["median_ms"], 3)
            row["latency_min_ms"] = round(lat[row["variant"]]["min_ms"], 3)
            if fp32_ms:
                row["latency_ratio_fp32"] = round(lat[row["variant"]]["median_ms"] / fp32_ms, 3)
    h, w = config.input_size if config is not None else TFLiteModel(next(iter(paths.values()))).input_size
    return {"format": REPORT_FORMAT, "data": str(data), "split": split,
            "input_size": [int(h), int(w)], "model_config": config.to_dict() if config is not None else None,
            "rows": rows, "flags": flags,
            "latency": {"threads": threads, "runs": latency_runs, "interleaved": True,
                        "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(load_after[0], 2),
                        "cpus": os.cpu_count()},
            "parity_images": len(images) if images is not None else 0,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _drop(reference: dict, row: dict):
    if reference.get("miou") is None or row.get("miou") is None:
        return None
    return round(100.0 * (reference["miou"] - row["miou"]), 3)


# --- output ------------------------------------------------------------------------------------

def _fmt(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def _pct(fraction) -> str:
    if fraction is None:
        return "–"
    return "0" if fraction == 0 else f"{100 * fraction:.3f}"


def format_markdown(report: dict) -> str:
    """report.md: one table, then flags and how latency was measured."""
    lat = report["latency"]
    h, w = report["input_size"]
    lines = [f"# Export report: {h}x{w}, {report['split']} split of {report['data']}", "",
             "| variant | size MiB | × fp32 | io | mIoU % | person IoU % | drop pt | max abs Δ | "
             "class flips % | ops int8/float | q/dq | float convs | latency ms (1 thr) | × fp32 |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        c = r.get("census") or {}
        lines.append("| " + " | ".join([
            r["variant"],
            _fmt(r.get("size_bytes") and r["size_bytes"] / 2**20, ".2f"),
            _fmt(r.get("size_ratio_fp32"), ".3f"),
            r.get("io_type", "float32" if r["variant"].startswith("keras") else "–"),
            _fmt(r.get("miou") and 100 * r["miou"], ".2f"),
            _fmt(r.get("person_iou") and 100 * r["person_iou"], ".2f"),
            _fmt(r.get("drop_pt"), "+.2f"),
            _fmt(r.get("max_abs_diff"), ".2e"),
            _pct(r.get("pixel_mismatch")),
            f"{c['int8']}/{c['float']}" if c else "–",
            f"{c['quantize']}/{c['dequantize']}" if c else "–",
            (f"**{c['float_convs']}**" if r.get("flag") else str(c["float_convs"])) if c else "–",
            _fmt(r.get("latency_ms"), ".2f"),
            _fmt(r.get("latency_ratio_fp32"), ".2f"),
        ]) + " |")
    lines += ["", f"mIoU and IoU at original mask resolution, {report['rows'][-1].get('images', '?')} images; "
              f"drop = Keras float mIoU − variant mIoU (points). max abs Δ and class flips: output vs the "
              f"Keras float model on the same {report['parity_images']} input tensors.",
              f"Latency: median of {lat['runs']} invokes per file, {lat['threads']} thread, XNNPACK, files "
              f"interleaved round-robin in one process; load average {lat['loadavg_1m_before']} → "
              f"{lat['loadavg_1m_after']} on {lat['cpus']} CPUs."]
    qat = next((r for r in report["rows"] if r["variant"] == "qat-int8" and "max_abs_diff_vs_qat_keras" in r), None)
    if qat:
        lines.append(f"qat-int8 vs its own Keras QAT model: max abs Δ {_fmt(qat['max_abs_diff_vs_qat_keras'], '.3g')}, "
                     f"class flips {100 * qat['pixel_mismatch_vs_qat_keras']:.3f} %.")
    if report["flags"]:
        lines += ["", "**Flags**"] + [f"- {f}" for f in report["flags"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir, embed: bool = True) -> tuple[Path, Path]:
    """Save report.json and report.md atomically; put each file's metrics into its metadata."""
    from mobile_seg.io_utils import atomic_path, write_json_atomic
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_json_atomic(json_path, report)
    with atomic_path(md_path) as tmp:
        tmp.write_text(format_markdown(report))
    if embed:
        for row in report["rows"]:
            if "file" in row:
                embed_metrics(Path(row["file"]), row, report)
    return json_path, md_path


def metrics_key(report: dict) -> str:
    """'<dataset>/<split>' of a report: the built dataset's name (its descriptor), and the split."""
    from mobile_seg.spec import metric_key
    name = report["data"]
    try:
        from mobile_seg.data.pipeline import read_descriptor
        name = read_descriptor(report["data"]).get("name") or name
    except Exception:  # noqa: BLE001 (a moved dataset: fall back to the folder name)
        pass
    return metric_key(name, report["split"])


def embed_metrics(path: Path, row: dict, report: dict) -> None:
    """Record the row's accuracy in the file's own metadata (atomic rewrite), under
    '<dataset>/<split>' next to figures recorded for other splits."""
    from converters.metadata import restamp
    figures = {k: row.get(k) for k in ("miou", "person_iou", "pixel_accuracy", "drop_pt",
                                       "max_abs_diff", "pixel_mismatch") if row.get(k) is not None}
    figures.update({"images": row.get("images"), "data": str(report["data"])})
    restamp(path, metrics={metrics_key(report): figures})


def report_export(result, data, **kwargs) -> dict:
    """build_report for an ExportResult (its in-memory Keras models are the references)."""
    return build_report(result.files, data, float_model=result.float_model, config=result.config,
                        qat_model=result.qat_model, labels=result.labels, **kwargs)
