"""Evaluate a training run or a .tflite file on a dataset split: one pass, then done.

Every example is scored at its ORIGINAL mask resolution: the image is fitted to the
model input by the model's `InputSpec` (plain stretch by default, how MediaPipe's square
selfie model is fed; letterbox or crop on request), class probabilities are predicted,
mapped back onto the image (bilinear), and the argmax enters the one streaming confusion
matrix (`mobile_seg.metrics`), ignoring 255. Keras checkpoints and .tflite files go
through the same `predict_mask`, both described by a `mobile_seg.spec.ModelSpec`.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobile_seg import spec as S
from mobile_seg.errors import ConfigError, DatasetError
from mobile_seg.metrics import ConfusionMatrix

RESIZE_MODES = S.RESIZE_RULES + ("pad",)  # "pad": the old name of letterbox


class KerasPredictor:
    """A training run's model behind the same interface as `TFLiteModel`.

    Args:
        model: a built tf_keras model (logits at input size).
        config: its ModelConfig (input size, normalisation).
    """

    def __init__(self, model, config, labels: list[str] | None = None, source: str = "keras"):
        import tensorflow as tf
        self.model, self.config, self.source = model, config, source
        self.labels = list(labels) if labels else config.labels
        self.spec = S.ModelSpec.from_config(config, self.labels)
        self._forward = tf.function(lambda x: tf.nn.softmax(model(x, training=False), axis=-1))

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config.input_size)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def predict_probabilities(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class probabilities [h, w, C] at model resolution for one RGB uint8 image."""
        inp = self.spec.input
        if image_rgb.shape[:2] != inp.size:
            image_rgb = inp.fit(image_rgb, inp.plan_fit(image_rgb.shape[:2], "stretch"))
        return self._forward(inp.normalise(image_rgb)[None]).numpy()[0]


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


def predict_probabilities_full(predictor, image: np.ndarray, resize: str = "stretch") -> np.ndarray:
    """Class probabilities [H, W, C] at the image's own resolution: fitted to the input by
    `resize` (stretch | letterbox | crop), predicted, mapped back."""
    try:
        rule = S.resize_rule(resize)
    except S.SpecError as e:
        raise ConfigError(f"{e}") from None
    inp = predictor.spec.input
    fit = inp.plan_fit(image.shape[:2], rule)
    return inp.map_back(predictor.predict_probabilities(inp.fit(image, fit)), fit)


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
    resize = S.resize_rule(resize)
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
    cm = ConfusionMatrix(ds_classes, int(descriptor.get("ignore_label", S.IGNORE_LABEL)))
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
