"""The one reader/runner of .tflite segmentation models (used by eval, bench and demo).

`TFLiteModel` loads a file with ai-edge-litert, resolves what it means into a
`mobile_seg.spec.ModelSpec` (our record, else its standard TFLite metadata, else
MediaPipe's convention; `mobile_seg.model_metadata`), and turns RGB images into class or
person probabilities at model resolution with one invoke each.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobile_seg import spec as S
from mobile_seg.errors import ModelFileError
from mobile_seg.model_metadata import read_model_file, read_record, read_standard, resolve_spec

OUTPUT_KINDS = S.OUTPUT_KINDS

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


def _not_loadable(content: bytes) -> bool:
    """True when LiteRT rejects the bytes as a flatbuffer (a truncated or damaged file)."""
    Interpreter, _ = _interpreter_class()
    try:
        Interpreter(model_content=content)
        return False
    except ValueError:
        return True


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a .tflite file, raising ModelFileError if it is missing or not a TFLite flatbuffer."""
    return read_model_file(path)


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
            self.metadata = read_record(self.content)
            self.standard_metadata = read_standard(self.content)
        except Exception as e:  # a corrupt metadata entry must not hide the model itself
            what = "truncated or corrupt (not a complete flatbuffer)" if _not_loadable(self.content) \
                else "unreadable metadata"
            raise ModelFileError(f"{what} ({e})", self.path) from e
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
        try:
            self.spec = resolve_spec(self.metadata, self.standard_metadata,
                                     input_shape=[int(d) for d in self.input["shape"]],
                                     input_dtype=np.dtype(self.input["dtype"]).name,
                                     output_shape=[int(d) for d in self.output["shape"]],
                                     output_dtype=np.dtype(self.output["dtype"]).name)
        except ValueError as e:
            raise ModelFileError(f"metadata does not describe this model: {e}", self.path) from e

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
        """mean/std/color/resize used to feed the model, as a dict (`spec.input` is the object)."""
        d = self.spec.input.to_dict()
        return {k: d[k] for k in ("mean", "std", "color", "resize")}

    @property
    def output_kind(self) -> str:
        return self.spec.output.kind

    @property
    def labels(self) -> list[str]:
        return list(self.spec.output.labels)

    @property
    def person_index(self) -> int:
        return self.spec.output.person_index

    @property
    def metrics(self) -> dict:
        """{"<dataset>/<split>": {"person_iou": ..., ...}} recorded in the file."""
        return self.spec.metrics

    def check_segmentation_output(self) -> None:
        """Raise ModelFileError unless the output is a [1,H,W,C] (or [1,H,W] category) map."""
        shape = [int(d) for d in self.output["shape"]]
        ok = (len(shape) == 4 and shape[1] > 1 and shape[2] > 1) or (len(shape) == 3 and shape[1] > 1)
        if not ok:
            raise ModelFileError(f"output shape {shape} is not a segmentation map [1,H,W,C]", self.path)

    # --- running -------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray) -> np.ndarray:
        """An RGB uint8 image stretched to the model input (unless it has the input size already),
        normalised and quantised: a [1,H,W,3] tensor."""
        inp = self.spec.input
        if image_rgb.shape[:2] != inp.size:
            image_rgb = inp.fit(image_rgb, inp.plan_fit(image_rgb.shape[:2], "stretch"))
        return self.quantize_input(inp.normalise(image_rgb)[None])

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
        return self.spec.output.class_probabilities(self.run(self.preprocess(image_rgb))[0])

    def person_probability(self, image_rgb: np.ndarray) -> np.ndarray:
        """Person probability [h, w] float32 at model resolution (one invoke)."""
        return self.spec.output.person_probability(self.run(self.preprocess(image_rgb))[0])

    def random_input(self, rng: np.random.Generator) -> np.ndarray:
        """A random input tensor of the right shape, dtype and range (for benchmarks).

        Values span what a normalised RGB image gives this model, (0 - mean) / std to
        (255 - mean) / std per channel (from the metadata or the MediaPipe fallback),
        quantised with the input tensor's scale and zero point when it has them.
        """
        low, high = self.spec.input.value_range
        return random_tensor(self.input_shape, self.input_dtype, self.input_quantization, rng,
                             low=np.float32(low), high=np.float32(high))

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
