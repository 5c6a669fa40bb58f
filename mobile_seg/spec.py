"""What a model file means, defined once: input, output and the metrics schema.

`InputSpec` says how an RGB image becomes the input tensor (size, per-channel mean/std,
colour order, how the image is fitted to the input), `OutputSpec` how the output tensor
becomes a person probability (kind, labels, person index, activation), and `METRICS`
how accuracy figures are keyed (`{"<dataset>/<split>": {"person_iou": 0.87, ...}}`).
Normalise, fit-to-input and map-back are implemented here and nowhere else: the data
pipeline, training, evaluation, export, the .tflite runtime, the bench plot and the demo
all call these. Pure numpy/OpenCV; no TensorFlow.

Example:
    >>> spec = InputSpec(height=224, width=224)
    >>> fit = spec.plan_fit((480, 640))
    >>> x = spec.normalise(spec.fit(frame_rgb, fit))                 # doctest: +SKIP
    >>> prob = spec.map_back(model_prob, fit, (480, 640))           # doctest: +SKIP
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np

# --- constants: the only place they are written ----------------------------------------------
MEAN = 127.5  # (pixel - 127.5) / 127.5 → [-1, 1]; padding with the mean pixel gives exactly 0.0
STD = 127.5
IGNORE_LABEL = 255
DEFAULT_LABELS = ("background", "person")
PERSON_LABEL = "person"
COLORS = ("RGB", "BGR", "GRAYSCALE")
# How an image is fitted to the model input (the map-back undoes it):
# stretch: resize to the input size ignoring the aspect ratio (MediaPipe's rule);
# letterbox: keep the aspect, fit inside, pad with the mean pixel (centred);
# crop: keep the aspect, cover the input, centre-crop.
RESIZE_RULES = ("stretch", "letterbox", "crop")
_RESIZE_ALIASES = {"pad": "letterbox"}  # the old eval name
INTERPOLATION = 1  # cv2.INTER_LINEAR (image → input; cv2 is imported where used, spec stays light)
OUTPUT_KINDS = ("logits", "probabilities", "category", "person-probability")
ACTIVATIONS = ("none", "sigmoid", "softmax")
TENSOR_DTYPES = ("float32", "float16", "int8", "uint8")
METRIC_NAMES = ("person_iou", "miou", "pixel_accuracy", "drop_pt", "max_abs_diff", "pixel_mismatch")
_METRIC_KEY = re.compile(r"^[^/\s:]+/[^/\s:]+$")


from mobile_seg.errors import SpecError  # noqa: E402 (errors is the other bottom-row module)


def resize_rule(name: str) -> str:
    """The canonical resize rule for `name` ('pad' is the old name of 'letterbox')."""
    rule = _RESIZE_ALIASES.get(name, name)
    if rule not in RESIZE_RULES:
        raise SpecError(f"unknown resize rule {name!r}; choose one of {', '.join(RESIZE_RULES)}")
    return rule


def _triple(value, name: str) -> tuple[float, float, float]:
    vals = (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise SpecError(f"{name} needs 1 or 3 values (R, G, B), got {list(vals)}")
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class Fit:
    """Where an image of `image_hw` lies in the model input: scaled to `scaled_hw` pixels
    and placed at `offset` (y, x) in the input (negative for crop, positive for letterbox)."""

    rule: str
    image_hw: tuple[int, int]
    scaled_hw: tuple[int, int]
    offset: tuple[int, int]

    @property
    def window(self) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the input holding image content (the whole input unless letterbox)."""
        if self.rule != "letterbox":
            return (0, 0, *self.scaled_hw) if self.rule == "stretch" else (0, 0, 0, 0)
        return (*self.offset, *self.scaled_hw)


@dataclass(frozen=True)
class InputSpec:
    """How an RGB uint8 image becomes the model's input tensor.

    Args:
        height, width: the fixed input size.
        mean, std: per-channel normalisation, input = (pixel - mean) / std.
        color: channel order the model expects (RGB for every model here).
        resize: stretch | letterbox | crop (see RESIZE_RULES).
        dtype: the input tensor's dtype; integer tensors get the normalised value quantised.
    """

    height: int
    width: int
    mean: tuple[float, float, float] = (MEAN, MEAN, MEAN)
    std: tuple[float, float, float] = (STD, STD, STD)
    color: str = "RGB"
    resize: str = "stretch"
    dtype: str = "float32"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("height", int(self.height))
        set_("width", int(self.width))
        if self.height < 1 or self.width < 1:
            raise SpecError(f"input size must be positive, got {self.height}x{self.width}")
        set_("mean", _triple(self.mean, "mean"))
        set_("std", _triple(self.std, "std"))
        if any(s <= 0 for s in self.std):
            raise SpecError(f"std must be positive, got {list(self.std)}")
        set_("color", str(self.color).upper())
        if self.color not in COLORS:
            raise SpecError(f"unknown colour order {self.color!r}; choose one of {', '.join(COLORS)}")
        set_("resize", resize_rule(self.resize))
        if self.dtype not in TENSOR_DTYPES:
            raise SpecError(f"unknown input dtype {self.dtype!r}; choose one of {', '.join(TENSOR_DTYPES)}")

    @classmethod
    def from_config(cls, config, **changes) -> "InputSpec":
        """The input of a `ModelConfig` (size, mean, std); `changes` override fields."""
        h, w = config.input_size
        return cls(height=h, width=w, mean=config.input_mean, std=config.input_std, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        known = {k: d[k] for k in ("height", "width", "mean", "std", "color", "resize", "dtype") if k in d}
        return cls(**known)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def replace(self, **changes) -> "InputSpec":
        return replace(self, **changes)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def pad_pixel(self) -> tuple[float, float, float]:
        """The pixel value that normalises to 0 (letterbox padding)."""
        return self.mean

    @property
    def value_range(self) -> tuple[list[float], list[float]]:
        """Per-channel (min, max) of a normalised image: (0 - mean) / std, (255 - mean) / std."""
        return ([(0.0 - m) / s for m, s in zip(self.mean, self.std)],
                [(255.0 - m) / s for m, s in zip(self.mean, self.std)])

    # --- normalise ---------------------------------------------------------------------------
    def normalise(self, image) -> np.ndarray:
        """(pixel - mean) / std as float32; works on numpy arrays of any leading shape."""
        mean, std = np.float32(self.mean), np.float32(self.std)
        return (np.asarray(image, np.float32) - mean) / std

    def normalise_tf(self, image):
        """`normalise` for a TensorFlow tensor (the input pipeline)."""
        import tensorflow as tf
        return (tf.cast(image, tf.float32) - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)

    def denormalise(self, x) -> np.ndarray:
        """Normalised input back to uint8 pixels (clipped): for pictures of training batches."""
        return np.clip(np.asarray(x, np.float32) * np.float32(self.std) + np.float32(self.mean),
                       0, 255).round().astype(np.uint8)

    # --- fit to the input, map back ----------------------------------------------------------
    def plan_fit(self, image_hw: tuple[int, int], rule: str | None = None) -> Fit:
        """How an image of `image_hw` is placed into the input by `rule` (default: self.resize)."""
        rule = resize_rule(rule or self.resize)
        fh, fw = int(image_hw[0]), int(image_hw[1])
        ih, iw = self.size
        if rule == "stretch":
            return Fit(rule, (fh, fw), (ih, iw), (0, 0))
        scale = min(ih / fh, iw / fw) if rule == "letterbox" else max(ih / fh, iw / fw)
        sh, sw = max(1, round(fh * scale)), max(1, round(fw * scale))
        if rule == "crop":
            sh, sw = max(sh, ih), max(sw, iw)
        else:
            sh, sw = min(sh, ih), min(sw, iw)
        return Fit(rule, (fh, fw), (sh, sw), ((ih - sh) // 2, (iw - sw) // 2))

    def fit(self, image: np.ndarray, fit: Fit | None = None) -> np.ndarray:
        """`image` (H, W, 3 uint8) resized/padded/cropped to the input size (uint8, same channels)."""
        import cv2
        fit = fit or self.plan_fit(image.shape[:2])
        ih, iw = self.size
        sh, sw = fit.scaled_hw
        scaled = image if image.shape[:2] == (sh, sw) else cv2.resize(image, (sw, sh), interpolation=INTERPOLATION)
        if fit.rule == "stretch":
            return scaled
        oy, ox = fit.offset
        if fit.rule == "letterbox":
            pad = [float(round(v)) for v in self.pad_pixel]
            return cv2.copyMakeBorder(scaled, oy, ih - sh - oy, ox, iw - sw - ox, cv2.BORDER_CONSTANT, value=pad)
        return scaled[-oy:-oy + ih, -ox:-ox + iw]

    def map_back(self, prob: np.ndarray, fit: Fit, out_hw: tuple[int, int] | None = None) -> np.ndarray:
        """A map at input resolution ([h, w] or [h, w, C]) mapped back onto the image, resized
        to `out_hw` (default: the image size) with bilinear interpolation."""
        import cv2
        oh, ow = out_hw or fit.image_hw
        sh, sw = fit.scaled_hw
        if fit.rule == "letterbox":
            oy, ox = fit.offset
            prob = prob[oy:oy + sh, ox:ox + sw]
        elif fit.rule == "crop":
            oy, ox = -fit.offset[0], -fit.offset[1]
            ih, iw = prob.shape[:2]
            prob = cv2.copyMakeBorder(np.ascontiguousarray(prob), oy, sh - ih - oy, ox, sw - iw - ox,
                                      cv2.BORDER_REPLICATE)
        if prob.shape[:2] == (oh, ow):
            return np.ascontiguousarray(prob)
        if prob.ndim == 3 and prob.shape[-1] > 4:  # OpenCV resizes at most 4 channels at once
            return np.stack([cv2.resize(np.ascontiguousarray(prob[..., c]), (ow, oh), interpolation=cv2.INTER_LINEAR)
                             for c in range(prob.shape[-1])], axis=-1)
        out = cv2.resize(np.ascontiguousarray(prob), (ow, oh), interpolation=cv2.INTER_LINEAR)
        return out[..., None] if prob.ndim == 3 and out.ndim == 2 else out


@dataclass(frozen=True)
class OutputSpec:
    """What the output tensor holds and how it becomes a person probability.

    Args:
        kind: logits | probabilities | category (uint8 [1,H,W] class map) | person-probability
            (one channel).
        labels: class names, index = channel (category: value).
        person_index: the person class.
        dtype: the output tensor's dtype.
        stride: input size / output size (1: output at input resolution).
    """

    kind: str = "logits"
    labels: tuple[str, ...] = DEFAULT_LABELS
    person_index: int = 1
    dtype: str = "float32"
    stride: int = 1

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise SpecError(f"unknown output kind {self.kind!r}; choose one of {', '.join(OUTPUT_KINDS)}")
        object.__setattr__(self, "labels", tuple(str(v) for v in self.labels))
        object.__setattr__(self, "person_index", int(self.person_index))
        if not 0 <= self.person_index < max(1, len(self.labels)):
            raise SpecError(f"person index {self.person_index} outside the {len(self.labels)} labels")
        if self.dtype not in TENSOR_DTYPES:
            raise SpecError(f"unknown output dtype {self.dtype!r}; choose one of {', '.join(TENSOR_DTYPES)}")

    @classmethod
    def from_dict(cls, d: dict, labels=None) -> "OutputSpec":
        known = {k: d[k] for k in ("kind", "person_index", "dtype", "stride") if k in d}
        labels = d.get("labels", labels)
        return cls(labels=tuple(labels) if labels else DEFAULT_LABELS, **known)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["activation"] = self.activation
        return d

    @property
    def activation(self) -> str:
        """What turns the output into confidences: softmax over channels for logits, none else."""
        return "softmax" if self.kind == "logits" else "none"

    @property
    def channels(self) -> int:
        return {"category": 0, "person-probability": 1}.get(self.kind, len(self.labels))

    def class_probabilities(self, out: np.ndarray) -> np.ndarray:
        """[h, w, C] class probabilities from one (dequantised) output map [h, w, c] or [h, w].

        A one-channel person probability gives C = 2 as (1 - p, p) with person at index 1;
        a category map gives one-hot maps.
        """
        out = np.asarray(out)
        if self.kind == "category":
            cats = out.astype(np.int64).reshape(out.shape[:2])
            return np.eye(max(len(self.labels), int(cats.max()) + 1), dtype=np.float32)[cats]
        if self.kind == "person-probability" or out.shape[-1] == 1:
            p = out[..., 0].astype(np.float32)
            return np.stack([1.0 - p, p], axis=-1)
        if self.kind == "logits":
            return softmax(out)
        return out.astype(np.float32)

    def person_probability(self, out: np.ndarray) -> np.ndarray:
        """[h, w] float32 person probability from one (dequantised) output map."""
        out = np.asarray(out)
        if self.kind == "category":
            return (out.reshape(out.shape[:2]) == self.person_index).astype(np.float32)
        if self.kind == "person-probability" or out.shape[-1] == 1:
            return out[..., 0].astype(np.float32)
        if self.kind == "logits":
            if out.shape[-1] == 2:  # softmax of two logits is the sigmoid of their difference
                other = 1 - self.person_index
                d = out[..., self.person_index].astype(np.float32) - out[..., other].astype(np.float32)
                return (1.0 / (1.0 + np.exp(-d))).astype(np.float32)
            return softmax(out)[..., self.person_index]
        return out[..., self.person_index].astype(np.float32)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(logits, np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- MediaPipe's convention: what a file without our record means -----------------------------
def foreign_input(height: int, width: int, dtype: str = "float32") -> InputSpec:
    """MediaPipe's selfie convention: float input in [0, 1] (mean 0, std 255), RGB, stretched."""
    return InputSpec(height=height, width=width, mean=(0.0,) * 3, std=(255.0,) * 3, dtype=dtype)


# --- metrics ------------------------------------------------------------------------------------
METRICS_DOC = '{"<dataset>/<split>": {"person_iou": 0.87, "miou": 0.91, ...}} (fractions in [0, 1])'


def metric_key(dataset: str, split: str) -> str:
    """'portraits/val' from a dataset name (or a built-dataset path) and a split."""
    name = str(dataset).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    key = f"{name}/{split}"
    if not _METRIC_KEY.match(key):
        raise SpecError(f"cannot make a metrics key from dataset {dataset!r} and split {split!r}")
    return key


def validate_metrics(metrics) -> dict:
    """`metrics` checked against METRICS_DOC; returns a plain copy. Extra per-split entries
    ('images', 'data') are kept; numeric values must be finite."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise SpecError(f"metrics must be {METRICS_DOC}, got {type(metrics).__name__}")
    out = {}
    for key, values in metrics.items():
        if not isinstance(key, str) or not _METRIC_KEY.match(key):
            raise SpecError(f"metrics key {key!r} is not '<dataset>/<split>' (schema: {METRICS_DOC})")
        if not isinstance(values, dict):
            raise SpecError(f"metrics[{key!r}] must be a dict of named figures, got {values!r}")
        for name, v in values.items():
            if name in METRIC_NAMES and v is not None:
                if not isinstance(v, (int, float)) or not np.isfinite(v):
                    raise SpecError(f"metrics[{key!r}][{name!r}] must be a number, got {v!r}")
        out[key] = dict(values)
    return out


def parse_metric(text: str) -> tuple[str, str]:
    """'portraits/val:person_iou' → ('portraits/val', 'person_iou'), checked."""
    if not isinstance(text, str) or ":" not in text:
        raise SpecError(f"expected DATASET/SPLIT:NAME (e.g. portraits/val:person_iou), got {text!r}")
    key, name = text.rsplit(":", 1)
    if not _METRIC_KEY.match(key):
        raise SpecError(f"{key!r} is not DATASET/SPLIT (e.g. portraits/val)")
    if name not in METRIC_NAMES:
        raise SpecError(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES[:3])}")
    return key, name


def metric_value(metrics: dict | None, key: str, name: str) -> float | None:
    value = ((metrics or {}).get(key) or {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


# --- the whole contract ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What a .tflite file means: its input, its output, and how accurate it is."""

    input: InputSpec
    output: OutputSpec = field(default_factory=OutputSpec)
    metrics: dict = field(default_factory=dict)
    name: str = ""

    @classmethod
    def from_config(cls, config, labels, *, output: str = "logits", person_index: int | None = None,
                    input_dtype: str = "float32", output_dtype: str = "float32", name: str = "") -> "ModelSpec":
        """The spec of a model built from `config` with `labels` (one per class), the given
        head and I/O dtypes; the person index is that of the label 'person'."""
        labels = tuple(labels)
        if len(labels) != config.num_classes:
            raise SpecError(f"{len(labels)} labels for a model of {config.num_classes} classes")
        if person_index is None:
            person_index = labels.index(PERSON_LABEL) if PERSON_LABEL in labels else min(1, len(labels) - 1)
        if output == "category":
            output_dtype = "uint8"
        return cls(InputSpec.from_config(config, dtype=input_dtype),
                   OutputSpec(kind=output, labels=labels, person_index=person_index, dtype=output_dtype),
                   name=name)

