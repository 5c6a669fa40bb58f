"""The one streaming confusion matrix: mIoU, per-class IoU, pixel accuracy.

Used for Keras checkpoints and .tflite files alike (evaluate.py) and for the running
mIoU of training (counts computed in-graph, added with `add_counts`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_seg.spec import IGNORE_LABEL  # noqa: E402


@dataclass
class ConfusionMatrix:
    """Rows = ground truth, columns = prediction; ignore-labelled pixels are skipped.

    Example:
        >>> cm = ConfusionMatrix(2)
        >>> cm.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 255]]))
        >>> cm.per_class_iou().tolist()
        [0.5, 0.5]
    """

    num_classes: int
    ignore_label: int = IGNORE_LABEL

    def __post_init__(self):
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, label) -> None:
        """Add one prediction/label pair (any shape, same size; integer class indices)."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        label = np.asarray(label).reshape(-1).astype(np.int64)
        if pred.shape != label.shape:
            raise ValueError(f"prediction has {pred.size} pixels, label {label.size}")
        keep = (label != self.ignore_label) & (label >= 0) & (label < self.num_classes)
        n = self.num_classes
        self.matrix += np.bincount(label[keep] * n + np.clip(pred[keep], 0, n - 1),
                                   minlength=n * n).reshape(n, n)

    def add_counts(self, counts) -> None:
        """Add a precomputed confusion matrix (`[C, C]` or flat `[C*C]`, e.g. from the graph)."""
        self.matrix += np.asarray(counts, np.int64).reshape(self.num_classes, self.num_classes)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.add_counts(other.matrix)

    def reset(self) -> None:
        self.matrix[:] = 0

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both labels and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (in labels or predictions); NaN when empty."""
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def to_dict(self, class_names=None) -> dict:
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        iou = self.per_class_iou()
        return {"miou": _num(self.miou()), "pixel_accuracy": _num(self.pixel_accuracy()),
                "per_class_iou": {n: _num(v) for n, v in zip(names, iou)},
                "confusion_matrix": self.matrix.tolist(), "class_names": names, "pixels": self.total}


def _num(x: float):
    return None if np.isnan(x) else round(float(x), 6)
