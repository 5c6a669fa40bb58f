"""Softmax cross-entropy over pixels that ignores the ignore label (255)."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

IGNORE_LABEL = 255


def pixel_cross_entropy(labels, logits, *, ignore_label: int = IGNORE_LABEL,
                        class_weights: Sequence[float] | None = None):
    """Per-image mean softmax cross-entropy over labelled pixels.

    Args:
        labels: int `[B, H, W]` class indices; `ignore_label` pixels contribute nothing.
        logits: float `[B, H, W, C]`.
        class_weights: optional per-class weights; each pixel's loss is scaled by the weight
            of its true class, and the sum is divided by the number of labelled pixels.

    Returns:
        float32 `[B]` losses (an image with no labelled pixel has loss 0).
    """
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    valid = tf.logical_and(tf.not_equal(labels, ignore_label), labels < num_classes)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
    weights = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
    per_image = tf.reduce_sum(ce * weights, axis=[1, 2])
    count = tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2])
    return tf.math.divide_no_nan(per_image, count)
