"""Embed and read mobile-seg metadata in a .tflite flatbuffer.

The metadata is one JSON document stored in the model's `metadata` list under the
name `mobile_seg` (the same mechanism the TFLite Support metadata uses, without its
schema). A reader holding only the .tflite file gets labels, input size, normalisation
and output meaning from it. Pure flatbuffer code: no TensorFlow import.
"""
from __future__ import annotations

import json

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

METADATA_NAME = "mobile_seg"
FORMAT = "mobile-seg-tflite/1"
_IDENT = b"TFL3"


def is_tflite(data: bytes) -> bool:
    """True if `data` carries the TFLite flatbuffer identifier."""
    return len(data) >= 8 and data[4:8] == _IDENT


def embed_metadata(tflite: bytes, metadata: dict) -> bytes:
    """Return `tflite` with `metadata` (JSON-serialisable) stored under `mobile_seg`.

    An existing `mobile_seg` entry is replaced; other metadata entries are kept.
    """
    if not is_tflite(tflite):
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    meta = dict(metadata)
    meta.setdefault("format", FORMAT)
    payload = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    ours = [m for m in (model.metadata or []) if _name(m.name) == METADATA_NAME]
    if ours:  # re-embedding: overwrite our buffer rather than leave the old one behind
        model.buffers[ours[0].buffer].data = payload
        model.metadata = [m for m in model.metadata if m is ours[0] or _name(m.name) != METADATA_NAME]
    else:
        buffer = schema.BufferT()
        buffer.data = payload
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata = list(model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(tflite: bytes) -> dict | None:
    """Return the embedded `mobile_seg` metadata dict, or None when the model has none."""
    model = schema.Model.GetRootAs(tflite, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) != METADATA_NAME:
            continue
        buf = model.Buffers(entry.Buffer())
        if buf.Offset():  # large models keep buffers after the flatbuffer
            raw = tflite[buf.Offset(): buf.Offset() + buf.Size()]
        else:
            raw = buf.DataAsNumpy().tobytes()
        return json.loads(raw.decode("utf-8"))
    return None


def _name(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else (name or "")
