"""Write a .tflite file's metadata: standard TFLite Model Metadata plus our record.

`embed_metadata(tflite, record)` stores, from one record (docs/architecture.md):

- the standard TFLite Model Metadata (metadata_schema.fbs 1.5.0, what MediaPipe Tasks'
  ImageSegmenter and the TFLite Support library read): name, description, version, author,
  licence; the input as an RGB image with NormalizationOptions (mean/std) and value stats;
  the output as a segmentation mask with its label file (TENSOR_AXIS_LABELS) and MediaPipe's
  SEGMENTER_METADATA activation (softmax for logits, none for probabilities);
- `labels.txt` in a zip appended to the model (how associated files are packed);
- our record, one JSON document under `mobile_seg` (config, variant, metrics, provenance).

`restamp(path, ...)` rewrites an existing file's metadata in place (atomically), e.g. to
record metrics measured after export. The reader is `mobile_seg.model_metadata`; this
module writes with its slot numbers, using the flatbuffers builder (no generated code, no
TensorFlow).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from mobile_seg import spec as S
from mobile_seg.errors import ModelFileError
from mobile_seg.model_metadata import (
    ACTIVATION, ASSOCIATED_FILE, COLOR_SPACE, CONTENT, CONTENT_IMAGE, CUSTOM_METADATA,
    FILE_TENSOR_AXIS_LABELS, IMAGE_PROPERTIES, IMAGE_SIZE, LABEL_FILE, METADATA_IDENTIFIER, MODEL,
    NORMALIZATION, OPTIONS_NORMALIZATION, PROCESS_UNIT, RECORD_FORMAT, RECORD_NAME,
    SEGMENTER_IDENTIFIER, SEGMENTER_METADATA, SEGMENTER_OPTIONS, STATS, SUBGRAPH, TENSOR,
    TFLITE_METADATA, VALUE_RANGE, io_tensors, is_tflite, read_record, resolve_spec,
)
from mobile_seg.model_metadata import read_record as read_metadata  # noqa: F401 (the old name)

FORMAT = RECORD_FORMAT
MIN_PARSER_VERSION = "1.5.0"  # custom_metadata needs schema 1.5.0
AUTHOR = "mobile-seg"
LICENSE = ("Code Apache-2.0. The weights inherit the terms of their training data "
           "(see the model card); no licence is granted here for them.")
DESCRIPTION = ("Person segmentation (DeepLabV3+). Input: an RGB image stretched to the input size. "
               "Output: {output} at input resolution; labels in labels.txt.")
_OUTPUT_WORDS = {"logits": "per-class logits (apply softmax)", "probabilities": "per-class probabilities",
                 "category": "a uint8 class-index map", "person-probability": "the person probability"}


def embed_metadata(tflite: bytes, record: dict) -> bytes:
    """`tflite` with standard metadata, labels.txt and our `record` (JSON-serialisable).

    Earlier metadata of ours (both entries and the packed labels) is replaced; other
    metadata entries are kept. The record is stored as given, plus `format`.
    """
    if not is_tflite(tflite):
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    record = dict(record)
    record.setdefault("format", FORMAT)
    if "metrics" in record:
        record["metrics"] = S.validate_metrics(record["metrics"])
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    spec = resolve_spec(record, None, **io_tensors(tflite))
    about = {"name": record.get("name") or "mobile-seg model", "author": record.get("author", AUTHOR),
             "license": record.get("license", LICENSE),
             "version": " ".join(str(v) for v in (record.get("variant"), record.get("exporter")) if v) or "1",
             "description": record.get("description") or DESCRIPTION.format(output=_OUTPUT_WORDS[spec.output.kind])}
    standard = standard_metadata(spec, about, num_outputs=len(graph.outputs))
    _set_entry(model, TFLITE_METADATA, standard)
    _set_entry(model, RECORD_NAME, json.dumps(record, sort_keys=True).encode("utf-8"))
    content = bytes(flatbuffer_utils.convert_object_to_bytearray(model))  # drops an old appended zip
    return _append_files(content, {LABEL_FILE: "\n".join(spec.output.labels).encode("utf-8")})


def restamp(path: str | os.PathLike, *, metrics: dict | None = None, merge: bool = True,
            **updates) -> dict:
    """Rewrite the metadata of the .tflite at `path` in place (atomically); return the record.

    `metrics` ({"<dataset>/<split>": {"person_iou": ...}}) is merged into the recorded
    metrics (replaced with merge=False); `updates` set other record keys (name, license, ...).
    A file without our record gets one from what it says of itself. This is how a newly
    trained shipped model gets its measured figures: `restamp(file, metrics=...)`.
    """
    from mobile_seg.io_utils import write_bytes_atomic
    from mobile_seg.model_metadata import read_model_file, record_metrics
    path = Path(path)
    content = read_model_file(path)
    record = read_record(content) or _record_of_foreign(content)
    record.update(updates)
    try:
        current = record_metrics(record) if merge else {}
        for key, values in S.validate_metrics(metrics or {}).items():
            current[key] = {**current.get(key, {}), **values}
        record["metrics"] = current
        record["format"] = FORMAT
        data = embed_metadata(content, record)
    except ValueError as e:
        raise ModelFileError(f"cannot write metadata: {e}", path) from e
    write_bytes_atomic(path, data)
    return record


# --- the standard metadata flatbuffer ---------------------------------------------------------
def standard_metadata(spec: S.ModelSpec, about: dict, num_outputs: int = 1) -> bytes:
    """ModelMetadata (M001) for a one-input image segmenter described by `spec`."""
    b = flatbuffers.Builder(1024)
    inp = _input_tensor(b, spec.input)
    outputs = [_tensor(b, "output", "Not used by a segmentation client.") for _ in range(num_outputs - 1)]
    outputs.append(_output_tensor(b, spec.output))
    segmenter = _custom(b, SEGMENTER_METADATA, segmenter_options(spec.output.activation))
    subgraph = _table(b, SUBGRAPH, {
        "name": b.CreateString(spec.name or about["name"]),
        "input_tensor_metadata": _vector(b, [inp]),
        "output_tensor_metadata": _vector(b, outputs),
        "custom_metadata": _vector(b, [segmenter]),
    })
    strings = {k: b.CreateString(str(about[k])) for k in ("name", "description", "version", "author", "license")}
    root = _table(b, MODEL, {**strings, "subgraph_metadata": _vector(b, [subgraph]),
                             "min_parser_version": b.CreateString(MIN_PARSER_VERSION)})
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def segmenter_options(activation: str) -> bytes:
    """MediaPipe's ImageSegmenterOptions (V001): the activation of the output layer."""
    b = flatbuffers.Builder(32)
    b.StartObject(len(SEGMENTER_OPTIONS))
    b.PrependInt8Slot(SEGMENTER_OPTIONS["activation"], ACTIVATION[activation], 0)
    b.Finish(b.EndObject(), file_identifier=SEGMENTER_IDENTIFIER)
    return bytes(b.Output())


def _input_tensor(b, inp: S.InputSpec) -> int:
    if inp.dtype == "uint8":
        lo, hi = [0.0], [255.0]
    elif inp.dtype == "int8":
        lo, hi = [-128.0], [127.0]
    else:
        lo, hi = inp.value_range
    norm = _table(b, NORMALIZATION, {"mean": _floats(b, inp.mean), "std": _floats(b, inp.std)})
    unit = _table(b, PROCESS_UNIT, {"options": norm}, scalars={"options_type": (b.PrependUint8Slot, OPTIONS_NORMALIZATION)})
    size = _table(b, IMAGE_SIZE, {}, scalars={"width": (b.PrependUint32Slot, inp.width),
                                              "height": (b.PrependUint32Slot, inp.height)})
    props = _table(b, IMAGE_PROPERTIES, {"default_size": size},
                   scalars={"color_space": (b.PrependInt8Slot, COLOR_SPACE.get(inp.color, 0))})
    content = _table(b, CONTENT, {"content_properties": props},
                     scalars={"content_properties_type": (b.PrependUint8Slot, CONTENT_IMAGE)})
    stats = _table(b, STATS, {"max": _floats(b, hi), "min": _floats(b, lo)})
    return _tensor(b, "image", f"RGB image {inp.height}x{inp.width}, {inp.resize}ed to the input; "
                   f"input = (pixel - mean) / std", content=content, process_units=_vector(b, [unit]), stats=stats)


def _output_tensor(b, out: S.OutputSpec) -> int:
    label_file = _table(b, ASSOCIATED_FILE, {
        "name": b.CreateString(LABEL_FILE),
        "description": b.CreateString("Labels of the output channels (one per line)."),
    }, scalars={"type": (b.PrependInt8Slot, FILE_TENSOR_AXIS_LABELS)})
    props = _table(b, IMAGE_PROPERTIES, {}, scalars={"color_space": (b.PrependInt8Slot, COLOR_SPACE["GRAYSCALE"])})
    dims = _table(b, VALUE_RANGE, {}, scalars={"min": (b.PrependInt32Slot, 1), "max": (b.PrependInt32Slot, 2)})
    content = _table(b, CONTENT, {"content_properties": props, "range": dims},
                     scalars={"content_properties_type": (b.PrependUint8Slot, CONTENT_IMAGE)})
    words = _OUTPUT_WORDS[out.kind]
    return _tensor(b, "segmentation_masks", f"{words}; person = channel {out.person_index}",
                   content=content, associated_files=_vector(b, [label_file]))


def _tensor(b, name: str, description: str, **tables) -> int:
    return _table(b, TENSOR, {"name": b.CreateString(name), "description": b.CreateString(description), **tables})


def _custom(b, name: str, data: bytes) -> int:
    b.StartVector(1, len(data), 16)  # force_align: 16 in the schema
    for byte in reversed(data):
        b.PrependUint8(byte)
    vec = b.EndVector()
    return _table(b, CUSTOM_METADATA, {"name": b.CreateString(name), "data": vec})


def _table(b, slots: dict, offsets: dict, scalars: dict | None = None) -> int:
    """One table: `offsets` (already built children) and `scalars` {field: (prepend, value)}."""
    b.StartObject(len(slots))
    for name, off in offsets.items():
        if off is not None:
            b.PrependUOffsetTRelativeSlot(slots[name], off, 0)
    for name, (prepend, value) in (scalars or {}).items():
        prepend(slots[name], value, 0 if value else 1)  # default != value: always written
    return b.EndObject()


def _vector(b, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _floats(b, values) -> int:
    values = list(values)
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


# --- the model flatbuffer -----------------------------------------------------------------------
def _record_of_foreign(content: bytes) -> dict:
    """A record for a file without ours, from what it says of itself (or MediaPipe's convention)."""
    from mobile_seg.model_metadata import read_standard
    standard = read_standard(content)
    spec = resolve_spec(None, standard, **io_tensors(content))
    record = {"name": spec.name or "model", "labels": list(spec.output.labels),
              "input": {k: v for k, v in spec.input.to_dict().items() if k not in ("dtype",)},
              "output": {"kind": spec.output.kind, "person_index": spec.output.person_index}}
    for key in ("author", "license", "description"):
        if standard is not None and getattr(standard, key):
            record[key] = getattr(standard, key)
    return record


def _set_entry(model, name: str, payload: bytes) -> None:
    """Store `payload` as the metadata entry `name` (replacing an earlier one in place)."""
    data = np.frombuffer(payload, dtype=np.uint8)
    entries = [m for m in (model.metadata or []) if _name(m.name) == name]
    if entries:
        model.buffers[entries[0].buffer].data = data
        model.buffers[entries[0].buffer].offset = 0
        model.buffers[entries[0].buffer].size = 0
        model.metadata = [m for m in model.metadata if m is entries[0] or _name(m.name) != name]
        return
    buffer = schema.BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]


def _append_files(content: bytes, files: dict[str, bytes]) -> bytes:
    """The model followed by a zip of `files`, stored uncompressed (readers map them in place)."""
    stream = io.BytesIO(content)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return stream.getvalue()


def _name(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else (name or "")


def load_metrics_arg(text: str | None) -> dict | None:
    """`--metrics`: a JSON object, or a file holding one; validated against the schema."""
    from mobile_seg.errors import ConfigError
    if text is None:
        return None
    source = Path(text)
    try:
        raw = source.read_text() if not text.lstrip().startswith("{") and source.is_file() else text
        return S.validate_metrics(json.loads(raw))
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise ConfigError(f"--metrics: {e}") from None
