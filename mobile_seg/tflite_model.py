"""The one reader/runner of .tflite segmentation models (used by eval, bench and demo).

`TFLiteModel` loads a file with ai-edge-litert, reads our embedded metadata (or falls
back to MediaPipe-style conventions for foreign models), and turns RGB frames into
class probabilities at model resolution.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from converters.metadata import is_tflite, read_metadata
from mobile_seg.errors import ModelFileError

# Foreign models (MediaPipe selfie): float input in [0, 1], one-channel person probability.
FALLBACK_INPUT = {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "color": "RGB", "resize": "stretch"}
OUTPUT_KINDS = ("logits", "probabilities", "category", "person-probability")

# Ops that only move or reshape data: they do not count as "compute" in the census.
_DATA_MOVEMENT_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD", "PADV2",
                      "TRANSPOSE", "GATHER", "SLICE", "STRIDED_SLICE", "SPLIT", "PACK", "UNPACK"}


@dataclass(frozen=True)
class OpCensus:
    """How many ops of the graph compute in integer vs float, by op name."""

    int8: int
    float: int
    other: int
    quantize: int
    dequantize: int
    float_ops: dict[str, int]
    by_op: dict[str, int]

    @property
    def float_convs(self) -> int:
        """Convolutions still computing in float (an 'int8' model must have none)."""
        return sum(n for op, n in self.float_ops.items() if "CONV" in op.upper())

    def to_dict(self) -> dict:
        return {"int8": self.int8, "float": self.float, "other": self.other,
                "quantize": self.quantize, "dequantize": self.dequantize,
                "float_convs": self.float_convs, "float_ops": self.float_ops, "by_op": self.by_op}


def _interpreter_class():
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    return Interpreter, OpResolverType


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a .tflite file, raising ModelFileError if it is missing or not a TFLite flatbuffer."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError("file not found", path)
    if path.is_dir():
        raise ModelFileError("is a directory, expected a .tflite file", path)
    data = path.read_bytes()
    if not is_tflite(data):
        raise ModelFileError("not a TFLite model (no TFL3 flatbuffer identifier)", path)
    return data


class TFLiteModel:
    """A .tflite segmentation model with its input/output conventions resolved.

    Args:
        path: the .tflite file.
        num_threads: interpreter threads (None = runtime default).
        xnnpack: use the default XNNPACK delegate (on by default in LiteRT). Off, models
            with XNNPACK-only custom ops (MediaPipe's Convolution2DTransposeBias) cannot load.

    `init_ms` is the time LiteRT took to build the interpreter and allocate its tensors
    (the default delegate is applied there): the "Init" of TFLite's benchmark_model.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None, xnnpack: bool = True):
        self.path = Path(path)
        self.content = read_model_bytes(self.path)
        self.size_bytes = len(self.content)
        try:
            self.metadata = read_metadata(self.content)
        except Exception as e:  # a corrupt metadata entry must not hide the model itself
            raise ModelFileError(f"unreadable mobile_seg metadata ({e})", self.path) from e
        Interpreter, OpResolverType = _interpreter_class()
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter()
        try:
            self.interpreter = Interpreter(model_content=self.content, num_threads=num_threads,
                                           experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not xnnpack and "custom op" in first:
                first += " (XNNPACK provides this op: run with XNNPACK on)"
            raise ModelFileError(f"LiteRT cannot load the model: {first}", self.path) from e
        self.init_ms = (time.perf_counter() - start) * 1e3
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1:
            raise ModelFileError(f"expected one input tensor, found {len(inputs)}", self.path)
        self.input = inputs[0]
        self.output = outputs[0]
        sig = [int(d) for d in self.input["shape_signature"]]
        if any(d < 0 for d in sig[1:]):
            raise ModelFileError(f"input has a dynamic shape {sig}; export with a fixed input size", self.path)
        if len(self.input["shape"]) != 4 or self.input["shape"][-1] != 3:
            raise ModelFileError(f"input shape {[int(d) for d in self.input['shape']]} is not an image "
                                 "[1,H,W,3]", self.path)

    # --- conventions -------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        _, h, w, _ = (int(d) for d in self.input["shape"])
        return h, w

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero_point) of the input tensor; scale 0.0 means not quantised."""
        scale, zero = self.input["quantization"]
        return float(scale), int(zero)

    @property
    def input_spec(self) -> dict:
        """mean/std/colour/resize used to feed the model (metadata or MediaPipe fallback)."""
        spec = dict(FALLBACK_INPUT)
        if self.metadata:
            spec.update({k: v for k, v in self.metadata.get("input", {}).items() if k in spec})
        return spec

    @property
    def output_kind(self) -> str:
        if self.metadata:
            return self.metadata.get("output", {}).get("kind", "logits")
        channels = int(self.output["shape"][-1]) if len(self.output["shape"]) == 4 else 0
        return "person-probability" if channels == 1 else "probabilities"

    @property
    def labels(self) -> list[str]:
        if self.metadata and self.metadata.get("labels"):
            return list(self.metadata["labels"])
        return ["background", "person"]

    @property
    def person_index(self) -> int:
        if self.metadata:
            return int(self.metadata.get("output", {}).get("person_index", 1))
        return 1

    def check_segmentation_output(self) -> None:
        """Raise ModelFileError unless the output is a [1,H,W,C] (or [1,H,W] category) map."""
        shape = [int(d) for d in self.output["shape"]]
        ok = (len(shape) == 4 and shape[1] > 1 and shape[2] > 1) or (len(shape) == 3 and shape[1] > 1)
        if not ok:
            raise ModelFileError(f"output shape {shape} is not a segmentation map [1,H,W,C]", self.path)

    # --- running -------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray) -> np.ndarray:
        """Resize an RGB uint8 image to the model input, normalise, quantise: a [1,H,W,3] tensor."""
        h, w = self.input_size
        if image_rgb.shape[:2] != (h, w):
            image_rgb = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        spec = self.input_spec
        x = (image_rgb.astype(np.float32) - np.float32(spec["mean"])) / np.float32(spec["std"])
        return self.quantize_input(x[None])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float normalised input → the input tensor's dtype using its quantisation params."""
        dtype = self.input_dtype
        if dtype == np.float32:
            return x.astype(np.float32)
        if dtype == np.float16:
            return x.astype(np.float16)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Invoke on a ready input tensor; return the raw output tensor (dequantised to float
        if it is quantised, except category maps)."""
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        if self.output_kind != "category" and out.dtype in (np.int8, np.uint8, np.int16) and scale:
            out = (out.astype(np.float32) - zero) * scale
        return out

    def predict_probabilities(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class probabilities [h, w, C] at model resolution for one RGB uint8 image.

        One-channel person-probability models give C = 2 as (1 - p, p) with person at
        index 1; category models give one-hot maps.
        """
        out = self.run(self.preprocess(image_rgb))[0]
        kind = self.output_kind
        if kind == "category":
            cats = out.astype(np.int64).reshape(out.shape[:2])
            return np.eye(len(self.labels), dtype=np.float32)[cats]
        if kind == "person-probability" or out.shape[-1] == 1:
            p = out[..., 0].astype(np.float32)
            return np.stack([1.0 - p, p], axis=-1)
        if kind == "logits":
            out = out.astype(np.float32)
            e = np.exp(out - out.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return out.astype(np.float32)

    def person_probability(self, image_rgb: np.ndarray) -> np.ndarray:
        """Person probability [h, w] float32 at model resolution."""
        out = self.run(self.preprocess(image_rgb))[0]
        kind = self.output_kind
        if kind == "person-probability" or (kind != "category" and out.shape[-1] == 1):
            return out[..., 0].astype(np.float32)
        if kind == "category":
            return (out.reshape(out.shape[:2]) == self.person_index).astype(np.float32)
        probs = self.predict_probabilities(image_rgb) if kind == "logits" else out
        return probs[..., self.person_index].astype(np.float32)

    def random_input(self, rng: np.random.Generator) -> np.ndarray:
        """A random input tensor of the right shape, dtype and range (for benchmarks).

        Values span what a normalised RGB image gives this model, (0 - mean) / std to
        (255 - mean) / std per channel (from the metadata or the MediaPipe fallback),
        quantised with the input tensor's scale and zero point when it has them.
        """
        spec = self.input_spec
        mean, std = np.float32(spec["mean"]), np.float32(spec["std"])
        return random_tensor(self.input_shape, self.input_dtype, self.input_quantization, rng,
                             low=(0.0 - mean) / std, high=(255.0 - mean) / std)

    # --- inspection --------------------------------------------------------------------
    def op_census(self) -> OpCensus:
        """Count ops by the dtype they compute in (from their first input tensor)."""
        return op_census(self.content)


def random_tensor(shape: tuple[int, ...], dtype, quantization: tuple[float, int],
                  rng: np.random.Generator, low=-1.0, high=1.0) -> np.ndarray:
    """Random input values uniform over the real range [low, high] (scalars or per-channel
    arrays broadcasting against `shape`), in the tensor's dtype.

    Float tensors get the real values. Quantised integer tensors (scale > 0) get them
    quantised, `round(x / scale) + zero_point` clipped to the dtype. Integer tensors
    without quantisation (scale 0, e.g. raw uint8 pixels) get their full integer range.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.uniform(low, high, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    info = np.iinfo(dtype)
    scale, zero = (float(quantization[0]), int(quantization[1])) if quantization else (0.0, 0)
    if scale > 0:
        q = np.round(rng.uniform(low, high, size=shape) / scale) + zero
        return np.clip(q, info.min, info.max).astype(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64).astype(dtype)


def op_census(content: bytes) -> OpCensus:
    """Classify every op of the main subgraph by the dtype it computes in.

    Read from the flatbuffer (not the interpreter, whose delegate rewrites the plan). An op's
    dtype is that of its first non-constant input. DEQUANTIZE of a constant (fp16 weights)
    is weight storage, not a float boundary, and is not counted as a dequantize.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    graph = model.Subgraphs(0)

    def op_name(op) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            return code.CustomCode().decode()
        return names.get(builtin, str(builtin))

    def is_constant(t: int) -> bool:
        buf = model.Buffers(graph.Tensors(t).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

    by_op: Counter = Counter()
    float_ops: Counter = Counter()
    counts: Counter = Counter()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_name(op)
        inputs = [t for t in op.InputsAsNumpy().tolist() if t >= 0] if op.InputsLength() else []
        live = [t for t in inputs if not is_constant(t)]
        if name == "DEQUANTIZE" and not live:
            by_op["DEQUANTIZE (weights)"] += 1
            continue
        by_op[name] += 1
        if name in ("QUANTIZE", "DEQUANTIZE"):
            counts[name.lower()] += 1
            continue
        first = types.get(graph.Tensors((live or inputs)[0]).Type(), "") if (live or inputs) else ""
        if first in ("INT8", "UINT8", "INT16"):
            counts["int8"] += 1
        elif first.startswith("FLOAT"):
            counts["float"] += 1
            if name not in _DATA_MOVEMENT_OPS:
                float_ops[name] += 1
        else:
            counts["other"] += 1
    return OpCensus(int8=counts["int8"], float=counts["float"], other=counts["other"],
                    quantize=counts["quantize"], dequantize=counts["dequantize"],
                    float_ops=dict(sorted(float_ops.items())), by_op=dict(sorted(by_op.items())))
