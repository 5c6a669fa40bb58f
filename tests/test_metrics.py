"""The streaming confusion matrix: counts, ignore label, IoU, accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_seg.metrics import ConfusionMatrix


def test_counts_ignore_and_scores():
    cm = ConfusionMatrix(2)
    label = np.array([[0, 0, 1, 1], [1, 1, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 1, 1, 0]])
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1], [1, 3]]
    assert cm.total == 6
    iou = cm.per_class_iou()
    assert iou == pytest.approx([1 / 3, 3 / 5])
    assert cm.miou() == pytest.approx((1 / 3 + 3 / 5) / 2)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)


def test_streaming_equals_one_shot_and_add_counts():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 3, (7, 9)) for _ in range(5)]
    labels = [np.where(rng.random((7, 9)) < 0.1, 255, rng.integers(0, 3, (7, 9))) for _ in range(5)]
    streaming, one_shot, merged = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    for p, l in zip(preds, labels):
        streaming.update(p, l)
    one_shot.update(np.stack(preds), np.stack(labels))
    assert (streaming.matrix == one_shot.matrix).all()
    merged.add_counts(one_shot.matrix.reshape(-1))
    merged.merge(one_shot)
    assert (merged.matrix == 2 * one_shot.matrix).all()
    # reference: pixel counting by hand
    ref = np.zeros((3, 3), int)
    for p, l in zip(preds, labels):
        for a, b in zip(l.ravel(), p.ravel()):
            if a != 255:
                ref[a, b] += 1
    assert (streaming.matrix == ref).all()


def test_absent_class_is_nan_and_excluded():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    iou = cm.per_class_iou()
    assert iou[0] == 1 and iou[1] == 1 and np.isnan(iou[2])
    assert cm.miou() == 1.0
    d = cm.to_dict(["bg", "person", "cat"])
    assert d["per_class_iou"] == {"bg": 1.0, "person": 1.0, "cat": None}
    assert d["confusion_matrix"][0][0] == 2 and d["pixels"] == 3
    assert np.isnan(ConfusionMatrix(2).miou())


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ConfusionMatrix(2).update(np.zeros(3), np.zeros(4))
