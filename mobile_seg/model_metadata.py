"""Read what a .tflite file says about itself: standard TFLite Model Metadata and our record.

A file may carry (a) the standard TFLite Model Metadata flatbuffer (`TFLITE_METADATA`,
schema identifier M001, what MediaPipe Tasks and the TFLite Support library read), with
its associated files (labels.txt) in a zip archive appended to the model, and (b) our
record, one JSON document under `mobile_seg`. `read_file_spec` turns either, or neither
(MediaPipe's convention), into one `mobile_seg.spec.ModelSpec`. This module only reads;
`converters/metadata.py` writes, with the slot numbers defined here. No TensorFlow.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

from flatbuffers import encode, number_types as N, table

from mobile_seg import spec as S

RECORD_NAME = "mobile_seg"            # our JSON record in Model.metadata
RECORD_FORMAT = "mobile-seg-tflite/2"  # /1: flat metrics {"miou", "data", "split", ...}
TFLITE_METADATA = "TFLITE_METADATA"   # the standard metadata in Model.metadata
METADATA_IDENTIFIER = b"M001"
SEGMENTER_METADATA = "SEGMENTER_METADATA"  # MediaPipe's custom metadata: the output activation
SEGMENTER_IDENTIFIER = b"V001"
LABEL_FILE = "labels.txt"
TFLITE_IDENTIFIER = b"TFL3"

# Field slots of metadata_schema.fbs 1.5.0 (and MediaPipe's image_segmenter_metadata_schema.fbs).
MODEL = dict(name=0, description=1, version=2, subgraph_metadata=3, author=4, license=5,
             associated_files=6, min_parser_version=7)
SUBGRAPH = dict(name=0, description=1, input_tensor_metadata=2, output_tensor_metadata=3,
                associated_files=4, input_process_units=5, output_process_units=6,
                input_tensor_groups=7, output_tensor_groups=8, custom_metadata=9)
TENSOR = dict(name=0, description=1, dimension_names=2, content=3, process_units=4, stats=5,
              associated_files=6)
CONTENT = dict(content_properties_type=0, content_properties=1, range=2)
IMAGE_PROPERTIES = dict(color_space=0, default_size=1)
IMAGE_SIZE = dict(width=0, height=1)
VALUE_RANGE = dict(min=0, max=1)
PROCESS_UNIT = dict(options_type=0, options=1)
NORMALIZATION = dict(mean=0, std=1)
STATS = dict(max=0, min=1)
ASSOCIATED_FILE = dict(name=0, description=1, type=2, locale=3, version=4)
CUSTOM_METADATA = dict(name=0, data=1)
SEGMENTER_OPTIONS = dict(activation=0, min_parser_version=1)
# enum values
CONTENT_IMAGE = 2                # ContentProperties.ImageProperties
OPTIONS_NORMALIZATION = 1        # ProcessUnitOptions.NormalizationOptions
COLOR_SPACE = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}
FILE_TENSOR_AXIS_LABELS = 2      # AssociatedFileType.TENSOR_AXIS_LABELS
ACTIVATION = {"none": 0, "sigmoid": 1, "softmax": 2}


def is_tflite(data: bytes) -> bool:
    """True if `data` carries the TFLite flatbuffer identifier."""
    return len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER


# --- a minimal flatbuffer table reader ------------------------------------------------------------
class _Table:
    """Field access by slot number on a flatbuffer table (what generated code does)."""

    def __init__(self, buf, pos: int):
        self.t = table.Table(buf, pos)

    @classmethod
    def root(cls, buf) -> "_Table":
        return cls(buf, encode.Get(N.UOffsetTFlags.packer_type, buf, 0))

    def _o(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._o(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8") if o else None

    def scalar(self, slot: int, flags, default=0):
        o = self._o(slot)
        return self.t.Get(flags, o + self.t.Pos) if o else default

    def table(self, slot: int) -> "_Table | None":
        o = self._o(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._o(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float] | None:
        o = self._o(slot)
        if not o:
            return None
        start = self.t.Vector(o)
        return [float(self.t.Get(N.Float32Flags, start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def data(self, slot: int) -> bytes:
        o = self._o(slot)
        if not o:
            return b""
        start = self.t.Vector(o)
        return bytes(self.t.Bytes[start:start + self.t.VectorLen(o)])


# --- the model flatbuffer's metadata entries ---------------------------------------------------
def metadata_entries(content: bytes) -> dict[str, bytes]:
    """{name: bytes} of the model's `metadata` list (buffers stored inline or after the model)."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(content, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = entry.Name().decode("utf-8") if entry.Name() else ""
        buf = model.Buffers(entry.Buffer())
        if buf.Offset():  # large models keep buffers after the flatbuffer
            out[name] = bytes(content[buf.Offset(): buf.Offset() + buf.Size()])
        else:
            out[name] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return out


def read_record(content: bytes) -> dict | None:
    """Our `mobile_seg` JSON record, or None when the file has none."""
    raw = metadata_entries(content).get(RECORD_NAME)
    return json.loads(raw.decode("utf-8")) if raw else None


def packed_files(content: bytes) -> dict[str, bytes]:
    """Associated files packed as a zip appended to the model ({} when there is none)."""
    stream = io.BytesIO(content)
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@dataclass(frozen=True)
class StandardMetadata:
    """The parts of a file's TFLite Model Metadata that we use (None: not given)."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    author: str | None = None
    license: str | None = None
    min_parser_version: str | None = None
    input_color: str | None = None
    input_mean: list[float] | None = None
    input_std: list[float] | None = None
    input_min: list[float] | None = None
    input_max: list[float] | None = None
    output_label_file: str | None = None
    activation: str | None = None
    labels: list[str] | None = None
    files: list[str] = field(default_factory=list)


def read_standard(content: bytes) -> StandardMetadata | None:
    """The file's standard TFLite Model Metadata (M001), or None when it has none."""
    raw = metadata_entries(content).get(TFLITE_METADATA)
    if not raw:
        return None
    if raw[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"{TFLITE_METADATA} buffer lacks the {METADATA_IDENTIFIER.decode()} identifier")
    root = _Table.root(raw)
    fields: dict = {k: root.string(MODEL[k]) for k in ("name", "description", "version", "author",
                                                        "license", "min_parser_version")}
    subgraphs = root.tables(MODEL["subgraph_metadata"])
    if subgraphs:
        sg = subgraphs[0]
        inputs = sg.tables(SUBGRAPH["input_tensor_metadata"])
        if inputs:
            fields.update(_input_fields(inputs[0]))
        outputs = sg.tables(SUBGRAPH["output_tensor_metadata"])
        if outputs:
            files = outputs[-1].tables(TENSOR["associated_files"])
            labels = [f.string(ASSOCIATED_FILE["name"]) for f in files
                      if f.scalar(ASSOCIATED_FILE["type"], N.Int8Flags) == FILE_TENSOR_AXIS_LABELS]
            fields["output_label_file"] = labels[0] if labels else None
        for custom in sg.tables(SUBGRAPH["custom_metadata"]):
            if custom.string(CUSTOM_METADATA["name"]) == SEGMENTER_METADATA:
                data = custom.data(CUSTOM_METADATA["data"])
                value = _Table.root(data).scalar(SEGMENTER_OPTIONS["activation"], N.Int8Flags) if data else 0
                fields["activation"] = {v: k for k, v in ACTIVATION.items()}.get(value)
    packed = packed_files(content)
    fields["files"] = sorted(packed)
    label_file = fields.get("output_label_file")
    if label_file and label_file in packed:
        fields["labels"] = [ln.strip() for ln in packed[label_file].decode("utf-8").splitlines() if ln.strip()]
    return StandardMetadata(**fields)


def _input_fields(tensor: _Table) -> dict:
    out: dict = {}
    content = tensor.table(TENSOR["content"])
    if content is not None and content.scalar(CONTENT["content_properties_type"], N.Uint8Flags) == CONTENT_IMAGE:
        props = content.table(CONTENT["content_properties"])
        if props is not None:
            color = props.scalar(IMAGE_PROPERTIES["color_space"], N.Int8Flags)
            out["input_color"] = {v: k for k, v in COLOR_SPACE.items()}.get(color)
    for unit in tensor.tables(TENSOR["process_units"]):
        if unit.scalar(PROCESS_UNIT["options_type"], N.Uint8Flags) == OPTIONS_NORMALIZATION:
            options = unit.table(PROCESS_UNIT["options"])
            if options is not None:
                out["input_mean"] = options.floats(NORMALIZATION["mean"])
                out["input_std"] = options.floats(NORMALIZATION["std"])
    stats = tensor.table(TENSOR["stats"])
    if stats is not None:
        out["input_min"], out["input_max"] = stats.floats(STATS["min"]), stats.floats(STATS["max"])
    return out


# --- one spec from whatever the file says --------------------------------------------------------
def record_metrics(record: dict | None) -> dict:
    """The record's metrics in the one schema (format /1's flat figures are re-keyed)."""
    metrics = (record or {}).get("metrics") or {}
    if metrics and "split" in metrics and not any(isinstance(v, dict) for v in metrics.values()):
        key = S.metric_key(metrics.get("data") or "data", metrics["split"])
        metrics = {key: {k: v for k, v in metrics.items() if k not in ("data", "split")}}
    return S.validate_metrics(metrics)


def resolve_spec(record: dict | None, standard: StandardMetadata | None, *, input_shape, input_dtype: str,
                 output_shape, output_dtype: str) -> S.ModelSpec:
    """The ModelSpec of a file: our record first, then its standard metadata, then MediaPipe's
    convention (float [0, 1] input, a one-channel person probability)."""
    h, w = int(input_shape[1]), int(input_shape[2])
    channels = int(output_shape[-1]) if len(output_shape) == 4 else 0
    if record:
        inp = dict(record.get("input") or {})
        inp.update(height=h, width=w, dtype=input_dtype)
        labels = record.get("labels") or (standard.labels if standard else None)
        out = dict(record.get("output") or {})
        out["dtype"] = output_dtype
        output = S.OutputSpec.from_dict(out, labels=labels)
        return S.ModelSpec(S.InputSpec.from_dict(inp), output, record_metrics(record), record.get("name") or "")
    inp = S.foreign_input(h, w, input_dtype)
    if standard is not None and standard.input_mean and standard.input_std:
        inp = inp.replace(mean=standard.input_mean, std=standard.input_std)
    labels = standard.labels if standard is not None and standard.labels else None
    if channels == 1:
        kind = "person-probability"
    elif channels == 0:
        kind = "category"
    else:
        kind = "logits" if standard is not None and standard.activation == "softmax" else "probabilities"
    if kind == "person-probability" or not labels:
        labels = list(S.DEFAULT_LABELS) if channels <= 2 else [f"class_{i}" for i in range(channels)]
    person = labels.index(S.PERSON_LABEL) if S.PERSON_LABEL in labels else min(1, len(labels) - 1)
    output = S.OutputSpec(kind=kind, labels=tuple(labels), person_index=person, dtype=output_dtype)
    return S.ModelSpec(inp, output, {}, (standard.name if standard else None) or "")


def io_tensors(content: bytes) -> dict:
    """Shapes and dtypes of the first input and the last output, read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    inp, out = graph.Tensors(graph.Inputs(0)), graph.Tensors(graph.Outputs(graph.OutputsLength() - 1))
    return {"input_shape": inp.ShapeAsNumpy().tolist(), "input_dtype": types.get(inp.Type(), "float32"),
            "output_shape": out.ShapeAsNumpy().tolist(), "output_dtype": types.get(out.Type(), "float32")}


def read_model_file(path) -> bytes:
    """The bytes of a .tflite file; ModelFileError if it is missing or not a TFLite flatbuffer."""
    from pathlib import Path
    from mobile_seg.errors import ModelFileError
    path = Path(path)
    if not path.exists():
        raise ModelFileError("file not found", path)
    if path.is_dir():
        raise ModelFileError("is a directory, expected a .tflite file", path)
    content = path.read_bytes()
    if not is_tflite(content):
        raise ModelFileError("not a TFLite model (no TFL3 flatbuffer identifier)", path)
    return content


def describe(path) -> dict:
    """What the .tflite at `path` says about itself: {"spec", "standard", "record", "text"}."""
    from pathlib import Path
    from mobile_seg.errors import ModelFileError
    path = Path(path)
    content = read_model_file(path)
    try:
        record, standard = read_record(content), read_standard(content)
        spec = resolve_spec(record, standard, **io_tensors(content))
    except ValueError as e:
        raise ModelFileError(f"unreadable metadata ({e})", path) from e
    inp, out = spec.input, spec.output
    lines = [f"{path}: {spec.name or '(no name)'}",
             f"input:    {inp.height}x{inp.width} {inp.color} {inp.dtype}, (pixel - {_nums(inp.mean)}) / "
             f"{_nums(inp.std)}, {inp.resize}",
             f"output:   {out.kind} {out.dtype}, labels {', '.join(out.labels)} (person = {out.person_index}), "
             f"activation {out.activation}",
             "standard: " + (f"TFLite Model Metadata {standard.min_parser_version}, files {', '.join(standard.files)}"
                             if standard else "none (MediaPipe Tasks cannot load a float-input model without it)"),
             "record:   " + (f"{record.get('format')} ({record.get('variant') or 'no variant'})" if record else "none")]
    for key, values in spec.metrics.items():
        figures = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k in S.METRIC_NAMES and v is not None)
        lines.append(f"metrics:  {key}: {figures}")
    return {"path": str(path), "spec": {"name": spec.name, "input": inp.to_dict(), "output": out.to_dict(),
                                        "metrics": spec.metrics},
            "standard": None if standard is None else dict(vars(standard)), "record": record,
            "text": "\n".join(lines)}


def _nums(values) -> str:
    vals = list(values)
    return f"{vals[0]:g}" if len(set(vals)) == 1 else "[" + ", ".join(f"{v:g}" for v in vals) + "]"
