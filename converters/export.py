"""Export a trained model to self-describing .tflite files: fp32, fp16, dynamic, int8, qat-int8.

One entry point, `export(...)`, loads the float model of a training run (`--run`) and/or
the quantization-aware model of a QAT run (`--qat`), then calls one converter function per
variant:

- `convert_fp32`: plain float graph (the parity reference, max |Δ| vs Keras < 1e-4).
- `convert_fp16`: float16 weights, float compute.
- `convert_dynamic`: int8 weights, float activations (dynamic-range quantization).
- `convert_int8`: post-training full-integer quantization calibrated on training images.
- `convert_qat_int8`: full-integer model from a QAT (fake-quantized) Keras model.

Every graph has a FIXED batch of 1: with a dynamic batch the converter lowers dilated convs
to SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, which stay float in an "int8" model. The
requested output head (`logits`, `probabilities`, `category` = uint8 argmax,
`person-probability` = one channel) is appended to the graph before conversion, and the
mobile_seg metadata (labels, input size and normalisation, output kind, variant, model
config) is embedded in the flatbuffer. Files are written atomically: a conversion that
fails leaves no .tflite and raises ExportError naming the op and the Keras layer.

Example:
    >>> result = export("runs/portraits", out_dir="export", variants=["fp32", "int8"],
    ...                 data="built/portraits", calib_images=100)   # doctest: +SKIP
    >>> [f.path.name for f in result.files]                          # doctest: +SKIP
    ['fp32.tflite', 'int8.tflite']
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from mobile_seg import __version__
from mobile_seg.config import EXPORT_VARIANTS, IO_TYPES, ExportConfig
from mobile_seg.errors import ConfigError, ExportError, ModelFileError
from mobile_seg.io_utils import write_json_atomic
from mobile_seg.spec import OUTPUT_KINDS, PERSON_LABEL

VARIANTS = EXPORT_VARIANTS
EXPORT_FILE = "export.json"
EXPORT_FORMAT = "mobile-seg-export/1"
FLOAT_VARIANTS = ("fp32", "fp16", "dynamic")
QUANTIZED_VARIANTS = ("int8", "qat-int8")
OUTPUTS = OUTPUT_KINDS
DEFAULT_CALIB_IMAGES = 100
# int8 softmax in TFLite has a fixed output quantization: scale 1/256, zero point -128.
# In a QAT graph a fake-quant with this range gives the converter exactly those params.
_SOFTMAX_FQ_MAX = 255.0 / 256.0


@dataclass(frozen=True)
class ExportSpec:
    """What a converted file looks like from outside: output head and I/O tensor types."""

    output: str = "logits"
    io_type: str = "float"
    person_index: int = 1

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown --output {self.output!r}; choose one of {', '.join(OUTPUTS)}")
        if self.io_type not in IO_TYPES:
            raise ConfigError(f"unknown --io-type {self.io_type!r}; choose one of {', '.join(IO_TYPES)}")


@dataclass
class ExportedFile:
    variant: str
    path: Path
    size_bytes: int
    seconds: float
    io_type: str
    census: dict
    metadata: dict = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {"variant": self.variant, "path": str(self.path), "size_bytes": self.size_bytes,
                "seconds": round(self.seconds, 2), "io_type": self.io_type, "census": self.census}


@dataclass
class ExportResult:
    out_dir: Path
    files: list[ExportedFile]
    skipped: dict[str, str]             # variant -> why it was not exported
    config: object = field(repr=False, default=None)            # ModelConfig of the export
    float_model: object = field(repr=False, default=None)       # Keras reference (report)
    qat_model: object = field(repr=False, default=None)
    labels: list[str] = field(default_factory=list)
    spec: ExportSpec = field(default_factory=ExportSpec)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [f.to_dict() for f in self.files],
                "skipped": self.skipped}

    def format(self) -> str:
        lines = []
        for f in self.files:
            c = f.census
            lines.append(f"{f.variant:<9} {f.path}  {f.size_bytes / 2**20:7.2f} MiB  io={f.io_type:<5} "
                         f"ops int8/float {c['int8']}/{c['float']}  quantize/dequantize "
                         f"{c['quantize']}/{c['dequantize']}  ({f.seconds:.0f} s)")
        for variant, why in self.skipped.items():
            lines.append(f"{variant:<9} skipped: {why}")
        return "\n".join(lines)


# --- the output head ------------------------------------------------------------------------

def apply_head(logits, output: str, person_index: int = 1, fake_quant: bool = False):
    """The requested output computed from logits `[1, H, W, C]` with TF ops (in the graph).

    `fake_quant` adds TFLite's fixed int8 softmax range after the softmax so that a QAT
    graph converts it to an int8 SOFTMAX (a QAT graph has no calibration data for it).
    """
    import tensorflow as tf
    if output == "logits":
        return tf.identity(logits, name="logits")
    if output == "category":
        return tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.uint8, name="category")
    probs = tf.nn.softmax(logits, axis=-1)
    if fake_quant:
        probs = tf.quantization.fake_quant_with_min_max_args(probs, min=0.0, max=_SOFTMAX_FQ_MAX, num_bits=8)
    if output == "probabilities":
        return tf.identity(probs, name="probabilities")
    return tf.identity(probs[..., person_index:person_index + 1], name="person_probability")


def head_numpy(logits: np.ndarray, output: str, person_index: int = 1) -> np.ndarray:
    """`apply_head` in numpy, for comparing a .tflite output with the Keras model's."""
    logits = np.asarray(logits, np.float32)
    if output == "logits":
        return logits
    if output == "category":
        return logits.argmax(-1).astype(np.uint8)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    if output == "probabilities":
        return probs
    return probs[..., person_index:person_index + 1]


# --- conversion ------------------------------------------------------------------------------

def _tf_dtype(io_type: str):
    import tensorflow as tf
    return {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_type]


def _convert(model, spec: ExportSpec, variant: str, configure: Callable, *, fake_quant: bool = False) -> bytes:
    """Trace `model` + head with a fixed [1, H, W, 3] input, let `configure` set the converter up."""
    import tensorflow as tf
    h, w = (int(d) for d in model.input_shape[1:3])

    @tf.function
    def serve(image):
        return apply_head(model(image, training=False), spec.output, spec.person_index, fake_quant)

    concrete = serve.get_concrete_function(tf.TensorSpec([1, h, w, 3], tf.float32, name="image"))
    # The converter saves its trackable object as a SavedModel first. Given the Keras model it
    # runs Keras's own serialization, which retraces every layer; a bare module holding the
    # same variables gives the same model 3-5x sooner.
    holder = tf.Module()
    holder.variables_ = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    configure(converter)
    try:
        return converter.convert()
    except Exception as e:  # ConverterError, ValueError, RuntimeError from the MLIR passes
        why = describe_conversion_error(e, model, concrete.graph)
        raise ExportError(f"{variant}: conversion failed: {why}") from e


def _set_io(converter, spec: ExportSpec) -> None:
    if spec.io_type != "float":
        converter.inference_input_type = _tf_dtype(spec.io_type)
        if spec.output != "category":  # a category map is uint8 whatever the io type
            converter.inference_output_type = _tf_dtype(spec.io_type)


def convert_fp32(model, spec: ExportSpec) -> bytes:
    """Float32 weights and compute: the numerically faithful reference."""
    _float_io_only(spec, "fp32")
    return _convert(model, spec, "fp32", lambda c: None)


def convert_fp16(model, spec: ExportSpec) -> bytes:
    """Float16 weights (half the size), dequantized to float32 at load time."""
    import tensorflow as tf
    _float_io_only(spec, "fp16")

    def configure(c):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    return _convert(model, spec, "fp16", configure)


def convert_dynamic(model, spec: ExportSpec) -> bytes:
    """int8 weights with float activations (dynamic-range quantization, no calibration)."""
    import tensorflow as tf
    _float_io_only(spec, "dynamic")

    def configure(c):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert(model, spec, "dynamic", configure)


def convert_int8(model, spec: ExportSpec, representative: Callable[[], Iterable]) -> bytes:
    """Full-integer post-training quantization (per-channel weights, int8 activations).

    `representative` yields `[image]` float batches of shape [1, H, W, 3] (normalised),
    drawn from the training split. Only int8 builtins are allowed: an op without an int8
    kernel fails the conversion instead of silently staying float.
    """
    import tensorflow as tf

    def configure(c):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        _set_io(c, spec)
    return _convert(model, spec, "int8", configure)


def convert_qat_int8(qat_model, spec: ExportSpec) -> bytes:
    """Full-integer model from a quantization-aware Keras model (ranges learnt in training).

    BatchNorm folds into the preceding conv here (tfmot kept Conv -> BN -> ReLU unquantized
    in between), weights are quantized per channel from their float values.
    """
    import tensorflow as tf

    def configure(c):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        _set_io(c, spec)
    return _convert(qat_model, spec, "qat-int8", configure, fake_quant=True)


def _float_io_only(spec: ExportSpec, variant: str) -> None:
    if spec.io_type != "float":
        raise ConfigError(f"--io-type {spec.io_type} applies to int8 and qat-int8 only; "
                          f"{variant} has float input and output")


_OP_RE = re.compile(r"'((?:tf|tfl|mhlo|stablehlo)\.[A-Za-z0-9_]+)'")
_LOC_RE = re.compile(r'loc\((?:fused\[)?(?:callsite\()?"([^"]+)"')


def describe_conversion_error(error: Exception, model=None, graph=None) -> str:
    """One line from a converter error: the failing op(s) and the Keras layer(s) they belong to.

    The converter names ops by type ('tf.MatrixInverse') and locates them by Python source
    line; the layer is found from the traced graph's node names ('.../<layer>/MatrixInverse')
    or, failing that, from location strings that carry node names.
    """
    text = str(error)
    ops = sorted(set(_OP_RE.findall(text)))
    layer_names = {layer.name for layer in getattr(model, "layers", [])}
    layers: list[str] = []

    def add_from(path: str):
        for part in re.split(r"[/@;]", path):
            for name in (part, part[len("quant_"):] if part.startswith("quant_") else None):
                if name and name in layer_names and name not in layers:
                    layers.append(name)

    tf_types = {op.split(".", 1)[1] for op in ops if op.startswith("tf.")}
    if graph is not None and tf_types:
        for node_name in _graph_nodes_of_type(graph, tf_types):
            add_from(node_name)
    for loc in _LOC_RE.findall(text):
        add_from(loc)
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if "error:" in ln), "")
    first = re.sub(r"^.*?error:\s*", "", first) or next((ln for ln in lines if ln), type(error).__name__)
    parts = []
    if ops:
        parts.append(f"op {', '.join(ops)}")
    if layers:
        parts.append(f"in layer {', '.join(layers[:3])}")
    head = " ".join(parts)
    return f"{head}: {first[:300]}" if head else first[:300]


def _graph_nodes_of_type(graph, types: set[str]) -> list[str]:
    """Names of the nodes of `types` in a traced graph and every function it calls."""
    graph_def = graph.as_graph_def()
    names = [n.name for n in graph_def.node if n.op in types]
    for fn in graph_def.library.function:
        names += [f"{fn.signature.name}/{n.name}" for n in fn.node_def if n.op in types]
    return names


# --- representative data (images: mobile_seg.data.calibration) ---------------------------------

def representative_dataset(images: np.ndarray) -> Callable[[], Iterator[list]]:
    def gen():
        for x in images:
            yield [x[None].astype(np.float32)]
    return gen


# --- metadata ----------------------------------------------------------------------------------

def build_metadata(config, variant: str, spec: ExportSpec, labels: list[str], *, source: dict,
                   calibration: dict | None = None) -> dict:
    """Our record (docs/architecture.md) for one exported file; `converters.metadata` derives
    the standard TFLite metadata from it."""
    from converters.metadata import FORMAT
    from mobile_seg.spec import ModelSpec
    io = _io_dtype(variant, spec)
    model = ModelSpec.from_config(config, labels, output=spec.output, person_index=spec.person_index,
                                  input_dtype=io, output_dtype=io)
    h, w = config.input_size
    meta = {
        "format": FORMAT,
        "name": f"{_model_name(config)}_{h}x{w}_{variant}",
        "labels": list(model.output.labels),
        "input": model.input.to_dict(),
        "output": {k: v for k, v in model.output.to_dict().items() if k != "labels"},
        "variant": variant,
        "model_config": config.to_dict(),
        "source": source,
        "exporter": f"mobile-seg {__version__}",
        "metrics": {},
    }
    if calibration:
        meta["calibration"] = calibration
    return meta


def _io_dtype(variant: str, spec: ExportSpec) -> str:
    return {"float": "float32", "int8": "int8", "uint8": "uint8"}[spec.io_type if variant in QUANTIZED_VARIANTS else "float"]


def _model_name(config) -> str:
    from mobile_seg.model.deeplab import model_name
    return model_name(config)


def write_tflite(path: Path, content: bytes, metadata: dict) -> bytes:
    """Embed `metadata` and write `path` atomically; return the written bytes."""
    from converters.metadata import embed_metadata
    from mobile_seg.io_utils import write_bytes_atomic
    data = embed_metadata(content, metadata)
    write_bytes_atomic(path, data)
    return data


# --- loading models -----------------------------------------------------------------------------

def parse_input_size(text: str | None) -> tuple[int, int] | None:
    """'256x192' -> (256, 192) (height x width); '256' -> (256, 256); None -> None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", str(text))
    if not m:
        raise ConfigError(f"--input-size must be HxW (e.g. 256x256), got {text!r}")
    h = int(m.group(1))
    return (h, int(m.group(2) or h))


def resize_model(model, config, input_size: tuple[int, int] | None, builder: Callable | None = None):
    """The same network with another fixed input size (weights copied); (model, config)."""
    if input_size is None or tuple(input_size) == tuple(config.input_size):
        return model, config
    new_config = config.replace(input_size=tuple(input_size))  # validates the size
    builder = builder or _build_float
    new_model = builder(new_config)
    new_model.set_weights(model.get_weights())
    return new_model, new_config


def _build_float(config):
    from mobile_seg.model import build_model
    return build_model(config)


def load_float_model(run_dir, input_size=None):
    """(model, config, step) of a training run's newest checkpoint, at `input_size`."""
    from mobile_seg.checkpoint import load_run
    model, config, step = load_run(run_dir)
    model, config = resize_model(model, config, input_size)
    return model, config, step


# --- the entry point ----------------------------------------------------------------------------

def resolve_variants(variant: str | Iterable[str], has_run: bool, has_qat: bool) -> tuple[list[str], dict]:
    """Variants to export and {variant: why skipped} for 'all' without the needed source."""
    requested = list(VARIANTS) if variant == "all" else ([variant] if isinstance(variant, str) else list(variant))
    unknown = [v for v in requested if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)} or all")
    out, skipped = [], {}
    for v in requested:
        if v == "qat-int8" and not has_qat:
            if variant == "all":
                skipped[v] = "needs --qat QAT_DIR (a `mobile-seg qat` run)"
                continue
            raise ConfigError("--variant qat-int8 needs --qat QAT_DIR (a `mobile-seg qat` run)")
        if v in ("fp32", "fp16", "dynamic", "int8") and not has_run:
            raise ConfigError(f"--variant {v} needs --run RUN_DIR (or a --qat dir that records its source run)")
        out.append(v)
    return out, skipped


def export(run: str | os.PathLike | None = None, *, out_dir: str | os.PathLike,
           variants: str | Iterable[str] = "all", qat: str | os.PathLike | None = None,
           data: str | os.PathLike | None = None, input_size: tuple[int, int] | None = None,
           calib_images: int = DEFAULT_CALIB_IMAGES, io_type: str = "float", output: str = "logits",
           float_model=None, qat_model=None, config=None, labels: list[str] | None = None,
           calibration_images: np.ndarray | None = None, stream=None,
           settings: ExportConfig | None = None) -> ExportResult:
    """Convert a run (float) and/or a QAT run into .tflite files in `out_dir`; record the
    settings and sources in OUT/export.json.

    Args:
        run: training run dir (float weights) for fp32/fp16/dynamic/int8. When only `qat`
            is given, the run the QAT started from (recorded in QAT_DIR) is used.
        variants: a variant name, a list of them, or "all" (qat-int8 is skipped without `qat`).
        data: built dataset: the training split calibrates int8; its class names label the model.
        input_size: (h, w) to export at instead of the trained size (weights are size-free).
        io_type: dtype of the input/output tensors of int8 and qat-int8 ("float", "int8", "uint8").
        output: the output head appended to the graph (see OUTPUTS).
        float_model, qat_model, config, labels, calibration_images: in-memory alternatives
            to loading from disk (tests, notebooks).
        settings: an ExportConfig (the CLI's); it replaces variants, input_size,
            calib_images, io_type and output.

    Returns an ExportResult; its float_model/qat_model are kept for the report.
    """
    stream = stream or sys.stderr
    if run is None and qat is None and float_model is None and qat_model is None:
        raise ConfigError("give --run RUN_DIR or --qat QAT_DIR")
    if settings is None:
        settings = ExportConfig(variant=variants if isinstance(variants, str) else ",".join(variants),
                                input_size=input_size, calib_images=calib_images, io_type=io_type, output=output)
    variants = "all" if settings.variant == "all" else list(settings.variants)
    input_size, calib_images = settings.input_size, settings.calib_images
    io_type, output = settings.io_type, settings.output
    spec = ExportSpec(output=output, io_type=io_type)
    source: dict = {}
    # --- cheap checks first: configs and flags, before any model is built ---
    from mobile_seg.checkpoint import read_run_config
    qat_info = None
    if qat is not None and qat_model is None:
        from mobile_seg.qat import read_qat_info
        qat_info = read_qat_info(qat)
        if run is None and qat_info.get("source_run") and Path(qat_info["source_run"]).is_dir():
            run = qat_info["source_run"]
    has_run = run is not None or float_model is not None
    todo, skipped = resolve_variants(variants, has_run, qat is not None or qat_model is not None)
    if spec.io_type != "float" and variants != "all":
        for v in todo:
            if v in FLOAT_VARIANTS:
                _float_io_only(spec, v)
    if "int8" in todo and calibration_images is None and data is None:
        raise ConfigError("--variant int8 needs --data BUILT_DIR: its training split calibrates "
                          "the activation ranges (--calib-images N)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")
    if config is None and input_size is not None:
        read_run_config(run if run is not None else qat).replace(input_size=tuple(input_size))  # validates

    # --- models ---
    if qat is not None and qat_model is None:
        from mobile_seg.qat import load_qat
        qat_model, qconfig, qstep, qat_info = load_qat(qat, input_size=input_size)
        config = config or qconfig
        source["qat"] = {"dir": str(Path(qat).resolve()), "step": qstep}
    if float_model is None and has_run:  # also for qat-int8 alone: the report's reference
        float_model, fconfig, fstep = load_float_model(run, input_size)
        if config is not None and qat_model is not None and fconfig.diff(config):
            raise ConfigError(f"--run {run} and --qat {qat} are different models: {'; '.join(fconfig.diff(config))}")
        config = config or fconfig
        source["run"] = {"dir": str(Path(run).resolve()), "step": fstep}
    if config is None:
        raise ConfigError("export needs --run RUN_DIR or --qat QAT_DIR")
    if spec.output == "person-probability":
        names = labels or _labels(data, config)
        if PERSON_LABEL in names:
            spec = ExportSpec(output=spec.output, io_type=spec.io_type, person_index=names.index(PERSON_LABEL))
    if labels is None:
        labels = _labels(data, config)
    calibration = None
    if "int8" in todo:
        if calibration_images is None:
            from mobile_seg.data.calibration import load_calibration_images
            calibration_images = load_calibration_images(data, config, calib_images)
        calibration = {"split": "train", "images": int(len(calibration_images)),
                       "data": str(data) if data is not None else None}
    (out_dir / EXPORT_FILE).unlink(missing_ok=True)   # a previous export's record: rewritten at the end
    result = ExportResult(out_dir, [], skipped, config=config, float_model=float_model,
                          qat_model=qat_model, labels=labels, spec=spec)
    for n, variant in enumerate(todo, 1):
        vspec = spec if variant in QUANTIZED_VARIANTS else ExportSpec(spec.output, "float", spec.person_index)
        print(f"[{n}/{len(todo)}] converting {variant} ...", file=stream, flush=True)
        start = time.perf_counter()
        if variant == "fp32":
            content = convert_fp32(float_model, vspec)
        elif variant == "fp16":
            content = convert_fp16(float_model, vspec)
        elif variant == "dynamic":
            content = convert_dynamic(float_model, vspec)
        elif variant == "int8":
            content = convert_int8(float_model, vspec, representative_dataset(calibration_images))
        else:
            content = convert_qat_int8(qat_model, vspec)
        meta = build_metadata(config, variant, vspec, labels, source=source,
                              calibration=calibration if variant == "int8" else None)
        if variant == "qat-int8" and qat_info:
            meta["qat"] = {k: qat_info[k] for k in ("steps", "learning_rate", "source_run", "source_step")
                           if k in qat_info}
        path = out_dir / f"{variant}.tflite"
        data_bytes = write_tflite(path, content, meta)
        from mobile_seg.tflite_model import op_census
        census = op_census(data_bytes).to_dict()
        result.files.append(ExportedFile(variant, path, len(data_bytes), time.perf_counter() - start,
                                         vspec.io_type, census, meta))
        print(f"[{n}/{len(todo)}] wrote {path.name}: {len(data_bytes) / 2**20:.2f} MiB in "
              f"{time.perf_counter() - start:.0f} s", file=stream, flush=True)
        if variant in QUANTIZED_VARIANTS:
            from converters.xnnpack import xnnpack_problem
            problem = xnnpack_problem(path)
            if problem:  # the file is kept: LiteRT's reference kernels run it (the report does)
                print(f"warning: {path.name}: {problem}", file=stream, flush=True)
    write_json_atomic(out_dir / EXPORT_FILE, {"format": EXPORT_FORMAT, "settings": settings.to_dict(),
                                              "source": source, "labels": labels,
                                              "files": [f.path.name for f in result.files]})
    return result


def _labels(data, config) -> list[str]:
    """The dataset's class names, else the model's (its training data's), else defaults."""
    if data is not None:
        from mobile_seg.data.pipeline import read_descriptor
        names = list(read_descriptor(data).get("class_names") or [])
        if len(names) == config.num_classes:
            return names
    return config.labels


INCOMPLETE_FILE = "INCOMPLETE"


@contextlib.contextmanager
def export_session(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold OUT for one export (+ report): locked, and marked by an INCOMPLETE file until the
    block ends without error, so that a stopped or failed export never looks finished.
    SIGINT/SIGTERM stop it cleanly (one line, exit 130/143)."""
    from mobile_seg.io_utils import check_output_path
    from mobile_seg.locks import folder_lock, note_stale
    from mobile_seg.signals import stop_on_signals
    out_dir = check_output_path(out_dir, "dir")
    marker = out_dir / INCOMPLETE_FILE
    with folder_lock(out_dir, "mobile-seg export") as lock, stop_on_signals(
            f"export stopped; {out_dir} is incomplete (see its {INCOMPLETE_FILE} file); rerun the same command"):
        note_stale(lock)
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("An export into this folder was started and has not finished (stopped, failed or "
                          "still running): its .tflite files may be missing, and their metadata and "
                          "report.json may lack the accuracy figures. Rerun the export command.\n")
        try:
            yield out_dir
        except BaseException:
            if [p.name for p in out_dir.iterdir()] == [INCOMPLETE_FILE]:  # nothing written yet
                marker.unlink()
                if created:
                    out_dir.rmdir()
            raise
        marker.unlink(missing_ok=True)
