"""Evaluate a training run or a .tflite file on a dataset split: one pass, then done.

Every example is scored at its ORIGINAL mask resolution: the image is resized to the
model input (plain stretch by default, how MediaPipe's square selfie model is fed),
class probabilities are predicted, resized back to the image size (bilinear), and the
argmax enters the one streaming confusion matrix (`mobile_seg.metrics`), ignoring 255.
Keras checkpoints and .tflite files go through the same `predict_mask`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mobile_seg.errors import ConfigError, DatasetError
from mobile_seg.metrics import ConfusionMatrix

RESIZE_MODES = ("stretch", "pad")


class KerasPredictor:
    """A training run's model behind the same interface as `TFLiteModel`.

    Args:
        model: a built tf_keras model (logits at input size).
        config: its ModelConfig (input size, normalisation).
    """

    def __init__(self, model, config, labels: list[str] | None = None, source: str = "keras"):
        import tensorflow as tf
        from mobile_seg.data.palette import default_class_names
        self.model, self.config, self.source = model, config, source
        self.labels = list(labels) if labels else default_class_names(config.num_classes)
        self._mean = np.float32(config.input_mean)
        self._std = np.float32(config.input_std)
        self._forward = tf.function(lambda x: tf.nn.softmax(model(x, training=False), axis=-1))

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config.input_size)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def predict_probabilities(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class probabilities [h, w, C] at model resolution for one RGB uint8 image."""
        h, w = self.input_size
        if image_rgb.shape[:2] != (h, w):
            image_rgb = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        x = (image_rgb.astype(np.float32) - self._mean) / self._std
        return self._forward(x[None]).numpy()[0]


def load_predictor(run: str | os.PathLike | None = None, tflite: str | os.PathLike | None = None,
                   num_threads: int | None = None, checkpoint: str | None = None):
    """A predictor for `--run RUN_DIR` (newest checkpoint) or `--tflite FILE`."""
    if (run is None) == (tflite is None):
        raise ConfigError("give exactly one of --run RUN_DIR or --tflite FILE")
    if tflite is not None:
        from mobile_seg.tflite_model import TFLiteModel
        model = TFLiteModel(tflite, num_threads=num_threads)
        model.check_segmentation_output()
        model.source = str(tflite)
        return model
    from mobile_seg.checkpoint import load_run
    model, config, step = load_run(run, checkpoint)
    predictor = KerasPredictor(model, config, source=f"{run} (step {step})")
    predictor.step = step
    return predictor


def _resize_input(image: np.ndarray, size: tuple[int, int], mode: str) -> tuple[np.ndarray, tuple]:
    """Image at model size; plus the (top, left, h, w) window holding the image content."""
    h, w = size
    ih, iw = image.shape[:2]
    interp = cv2.INTER_LINEAR  # as TFLiteModel.preprocess and MediaPipe feed their models
    if mode == "stretch":
        return cv2.resize(image, (w, h), interpolation=interp), (0, 0, h, w)
    scale = min(h / ih, w / iw)
    nh, nw = max(1, round(ih * scale)), max(1, round(iw * scale))
    canvas = np.full((h, w, 3), 127, np.uint8)  # the mean pixel: 0 after normalisation
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return canvas, (top, left, nh, nw)


def predict_probabilities_full(predictor, image: np.ndarray, resize: str = "stretch") -> np.ndarray:
    """Class probabilities [H, W, C] at the image's own resolution."""
    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    resized, (top, left, nh, nw) = _resize_input(image, tuple(predictor.input_size), resize)
    probs = predictor.predict_probabilities(resized)[top:top + nh, left:left + nw]
    ih, iw = image.shape[:2]
    out = np.stack([cv2.resize(np.ascontiguousarray(probs[..., c]), (iw, ih), interpolation=cv2.INTER_LINEAR)
                    for c in range(probs.shape[-1])], axis=-1)
    return out


def predict_mask(predictor, image: np.ndarray, resize: str = "stretch") -> np.ndarray:
    """uint8 class-index mask [H, W] at the image's own resolution."""
    return predict_probabilities_full(predictor, image, resize).argmax(-1).astype(np.uint8)


@dataclass
class EvalResult:
    source: str
    data: str
    split: str
    num_examples: int
    class_names: list[str]
    confusion: ConfusionMatrix
    seconds: float
    resize: str

    @property
    def miou(self) -> float:
        return self.confusion.miou()

    def to_dict(self) -> dict:
        d = {"source": self.source, "data": self.data, "split": self.split,
             "num_examples": self.num_examples, "resize": self.resize, "seconds": round(self.seconds, 2)}
        d.update(self.confusion.to_dict(self.class_names))
        return d

    def format(self) -> str:
        d = self.confusion.to_dict(self.class_names)
        lines = [f"{self.source} on {self.data} [{self.split}]: {self.num_examples} images, "
                 f"{self.seconds:.1f} s, resize={self.resize}",
                 f"mIoU            {_pct(d['miou'])}",
                 f"pixel accuracy  {_pct(d['pixel_accuracy'])}"]
        width = max(len(n) for n in self.class_names)
        lines += [f"  IoU {n:<{width}}  {_pct(v)}" for n, v in d["per_class_iou"].items()]
        lines.append("confusion matrix (rows = truth, columns = prediction):")
        cells = [[str(v) for v in row] for row in self.confusion.matrix.tolist()]
        cw = max([len(c) for row in cells for c in row] + [len(n) for n in self.class_names])
        lines.append(f"  {'':<{width}}  " + "  ".join(f"{n:>{cw}}" for n in self.class_names))
        for n, row in zip(self.class_names, cells):
            lines.append(f"  {n:<{width}}  " + "  ".join(f"{c:>{cw}}" for c in row))
        return "\n".join(lines)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def evaluate(data_dir: str | os.PathLike, split: str = "val", *, run: str | os.PathLike | None = None,
             tflite: str | os.PathLike | None = None, predictor=None, resize: str = "stretch",
             progress: bool = True, limit: int | None = None, num_threads: int | None = None,
             stream=None) -> EvalResult:
    """Score a run (newest checkpoint), a .tflite file, or a ready predictor on `split`.

    Makes exactly one pass over the split's examples (never waits for new checkpoints).
    """
    from mobile_seg.data.pipeline import iterate_examples, read_descriptor
    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    descriptor = read_descriptor(data_dir)
    splits = descriptor.get("splits", {})
    if split not in splits:
        raise DatasetError(f"no split {split!r} (have: {', '.join(sorted(splits)) or 'none'})", data_dir)
    total = int(splits[split].get("num_examples", 0))
    if total == 0:
        raise DatasetError(f"split {split!r} is empty: nothing to evaluate", data_dir)
    if predictor is None:
        predictor = load_predictor(run, tflite, num_threads=num_threads)
    ds_classes = int(descriptor.get("num_classes", 2))
    names = list(descriptor.get("class_names") or [])
    model_classes = int(getattr(predictor, "num_classes", 0) or len(predictor.labels))
    if model_classes != ds_classes:
        raise ConfigError(f"the model predicts {model_classes} classes, dataset {data_dir} has {ds_classes}")
    names = names if len(names) == ds_classes else list(predictor.labels)
    cm = ConfusionMatrix(ds_classes, int(descriptor.get("ignore_label", 255)))
    if limit:
        total = min(total, limit)

    bar = None
    stream = stream or sys.stderr
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="img", desc=f"eval {split}", file=stream, dynamic_ncols=True,
                   mininterval=0.5 if stream.isatty() else 10.0)
    start = time.perf_counter()
    n = 0
    try:
        for _id, image, mask in iterate_examples(data_dir, split):
            cm.update(predict_mask(predictor, image, resize), mask)
            n += 1
            if bar is not None:
                bar.update(1)
            if limit and n >= limit:
                break
    finally:
        if bar is not None:
            bar.close()
    if n == 0:
        raise DatasetError(f"split {split!r} yielded no examples", data_dir)
    return EvalResult(source=str(getattr(predictor, "source", "model")), data=str(data_dir), split=split,
                      num_examples=n, class_names=names, confusion=cm,
                      seconds=time.perf_counter() - start, resize=resize)


def evaluate_model(model, config, data_dir, split: str = "val", **kwargs) -> EvalResult:
    """Evaluate an in-memory Keras model (tests, end of training)."""
    return evaluate(data_dir, split, predictor=KerasPredictor(model, config), **kwargs)
