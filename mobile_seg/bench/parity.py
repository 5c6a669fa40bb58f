"""Delegate parity: does a fast path change the mask?

For each model, on real images from a dataset folder, a candidate execution path is compared
with the CPU reference — the same file on TFLite's reference (builtin, non-delegated)
kernels. Here the paths are:

- `xnnpack`: the file on XNNPACK (LiteRT's default CPU delegate) vs reference kernels;
- `fp16`: an fp16-weight twin of a float32 file (every float32 constant of a builtin op stored
  as float16 behind a DEQUANTIZE, what TFLite's float16 post-training quantization writes),
  on XNNPACK, vs the float32 file on reference kernels.

Per path: mean and minimum mask IoU (person probability > 0.5) against the reference, the
maximum and mean absolute difference of person probability over all pixels and images, and
the median `invoke()` latency of candidate and reference on those images. A model that the
reference kernels cannot load (MediaPipe's XNNPACK-only custom op) gets a row that says so.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mobile_seg.errors import ConfigError, MobileSegError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ParityRow:
    model: str
    path: str                    # "xnnpack" or "fp16"
    candidate: str               # e.g. "XNNPACK" / "fp16 weights, XNNPACK"
    reference: str
    images: int
    iou_mean: float | None = None
    iou_min: float | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    candidate_ms: float | None = None
    reference_ms: float | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parity_images(folder: str | os.PathLike, limit: int) -> list[Path]:
    """Image files of a dataset folder: a VOC folder's val split (else every JPEGImages file),
    or the images directly in `folder`; sorted, the first `limit`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("--parity-data: not a folder", folder)
    if limit < 1:
        raise ConfigError(f"--parity-images: expected ≥ 1, got {limit}")
    jpeg = folder / "JPEGImages"
    if jpeg.is_dir():
        split = folder / "ImageSets" / "Segmentation" / "val.txt"
        if split.is_file():
            ids = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
            files = [jpeg / f"{i}.jpg" for i in ids if (jpeg / f"{i}.jpg").is_file()]
        else:
            files = sorted(p for p in jpeg.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError("--parity-data: no images (expected JPEGImages/ of a VOC folder, or image files)",
                          folder)
    return files[:limit]


def load_rgb(path: Path) -> np.ndarray:
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError("--parity-data: cannot read this image", path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def float16_twin(content: bytes) -> bytes | None:
    """The model with every float32 constant input of a builtin op stored as float16 behind a
    DEQUANTIZE op; None when it has none (an int8 model, or fp16 weights already)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    custom = schema.BuiltinOperator.CUSTOM

    def builtin(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    targets = []
    for op in graph.operators:
        if builtin(op) in (custom, schema.BuiltinOperator.DEQUANTIZE):
            continue
        for t in op.inputs:
            if t < 0 or t in targets:
                continue
            tensor = graph.tensors[t]
            buf = model.buffers[tensor.buffer]
            if tensor.type == schema.TensorType.FLOAT32 and buf.data is not None and len(buf.data) > 0:
                targets.append(int(t))
    if not targets:
        return None
    deq = next((i for i, c in enumerate(model.operatorCodes)
                if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE), None)
    if deq is None:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
        code.version = 3
        model.operatorCodes.append(code)
        deq = len(model.operatorCodes) - 1
    new_ops = []
    for t in targets:
        tensor = graph.tensors[t]
        values = np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype=np.float32)
        half = schema.BufferT()
        half.data = np.frombuffer(values.astype(np.float16).tobytes(), dtype=np.uint8)
        model.buffers.append(half)
        t16 = schema.TensorT()
        t16.shape = tensor.shape
        t16.type = schema.TensorType.FLOAT16
        t16.buffer = len(model.buffers) - 1
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        t16.name = f"{name}_fp16".encode()
        graph.tensors.append(t16)
        empty = schema.BufferT()
        model.buffers.append(empty)
        tensor.buffer = len(model.buffers) - 1
        op = schema.OperatorT()
        op.opcodeIndex = deq
        op.inputs = [len(graph.tensors) - 1]
        op.outputs = [t]
        new_ops.append(op)
    graph.operators = new_ops + list(graph.operators)
    return bytes(fbu.convert_object_to_bytearray(model))


def _run_all(model, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float]:
    probs, times = [], []
    for k, img in enumerate(images):
        x = model.preprocess(img)
        model.interpreter.set_tensor(model.input["index"], x)
        if k == 0:
            model.interpreter.invoke()  # untimed: first-run allocation and packing
        start = time.perf_counter_ns()
        model.interpreter.invoke()
        times.append((time.perf_counter_ns() - start) / 1e6)
        out = model.interpreter.get_tensor(model.output["index"])
        scale, zero = model.output["quantization"]
        if out.dtype in (np.int8, np.uint8, np.int16) and scale:
            out = (out.astype(np.float32) - zero) * scale
        probs.append(model.spec.output.person_probability(out[0]).astype(np.float32))
    return probs, float(np.median(times))


def compare(candidate: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict:
    """Mask IoU (p > 0.5; two empty masks agree: IoU 1) and probability differences."""
    ious, max_diff, diffs = [], 0.0, []
    for c, r in zip(candidate, reference):
        mc, mr = c > 0.5, r > 0.5
        union = np.logical_or(mc, mr).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(mc, mr).sum() / union))
        d = np.abs(c.astype(np.float64) - r.astype(np.float64))
        max_diff = max(max_diff, float(d.max()))
        diffs.append(float(d.mean()))
    return {"iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)), "max_abs_diff": max_diff,
            "mean_abs_diff": float(np.mean(diffs))}


def run_parity(paths: Sequence[str | os.PathLike], names: Sequence[str], folder: str | os.PathLike,
               limit: int = 20, threads: int = 1, fp16: bool = True,
               progress: Callable[[str], None] | None = None) -> tuple[list[ParityRow], list[str]]:
    """Parity rows for every model (see the module doc) and the image files used."""
    import tempfile

    from mobile_seg.tflite_model import TFLiteModel, read_model_bytes

    say = progress or (lambda msg: None)
    files = parity_images(folder, limit)
    images = [load_rgb(f) for f in files]
    rows: list[ParityRow] = []
    for path, name in zip(paths, names):
        say(f"bench: parity of {name} on {len(images)} image(s) from {folder}")
        fast = TFLiteModel(path, num_threads=threads, xnnpack=True)
        fast_p, fast_ms = _run_all(fast, images)
        try:
            ref = TFLiteModel(path, num_threads=threads, xnnpack=False)
        except MobileSegError as e:
            rows.append(ParityRow(name, "xnnpack", "XNNPACK", "reference kernels", len(images),
                                  candidate_ms=fast_ms, note=f"no CPU reference: {e.message}"))
            continue
        ref_p, ref_ms = _run_all(ref, images)
        rows.append(ParityRow(name, "xnnpack", "XNNPACK", "reference kernels", len(images),
                              candidate_ms=fast_ms, reference_ms=ref_ms, **compare(fast_p, ref_p)))
        if not fp16:
            continue
        twin = float16_twin(read_model_bytes(path))
        if twin is None:
            continue
        with tempfile.TemporaryDirectory(prefix="mobile-seg-parity-") as tmp:
            twin_path = Path(tmp) / f"{Path(path).stem}_fp16.tflite"
            twin_path.write_bytes(twin)
            half = TFLiteModel(twin_path, num_threads=threads, xnnpack=True)
            half_p, half_ms = _run_all(half, images)
        rows.append(ParityRow(name, "fp16", "fp16 weights, XNNPACK", "fp32, reference kernels", len(images),
                              candidate_ms=half_ms, reference_ms=ref_ms, **compare(half_p, ref_p)))
    return rows, [str(f) for f in files]


PARITY_HEADER = ["model", "candidate", "reference", "images", "mask IoU mean", "mask IoU min",
                 "max Δp", "mean Δp", "candidate ms", "reference ms"]


def format_parity(rows: Sequence[ParityRow]) -> str:
    from mobile_seg.bench.results import pipe_table

    def f(v, fmt):
        if v is None:
            return "-"
        return format(v, ".1e") if 0 < v < 1e-3 else format(v, fmt)
    body = [[r.model, r.candidate, r.reference, str(r.images), f(r.iou_mean, ".4f"), f(r.iou_min, ".4f"),
             f(r.max_abs_diff, ".4f"), f(r.mean_abs_diff, ".5f"), f(r.candidate_ms, ".2f"),
             f(r.reference_ms, ".2f")] for r in rows]
    lines = [pipe_table(PARITY_HEADER, body, set(range(3, len(PARITY_HEADER)))), ""]
    lines += [f"{r.model} ({r.candidate}): {r.note}" for r in rows if r.note]
    lines.append("parity: person probability > 0.5 as the mask, at model resolution; latency = median "
                 "invoke() over the parity images")
    return "\n".join(lines)
