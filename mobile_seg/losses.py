"""Training losses: softmax cross-entropy over pixels that ignores the ignore label (255),
and the soft-label (distillation) loss towards a teacher's person probability."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mobile_seg.spec import IGNORE_LABEL  # noqa: E402


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


def soft_label_loss(target, weight, logits):
    """Per-image distillation loss towards a teacher's soft person probability.

    Binary cross-entropy between the student's softmax person probability (class 1 of
    2-class logits) and the target, minus the target's own entropy (so 0 when the student
    matches the teacher exactly), weighted per pixel and averaged over all pixels of the
    image: an example without a soft label (weight 0) adds nothing.

    Args:
        target: float `[B, H, W]` teacher person probability in [0, 1].
        weight: float `[B, H, W]` per-pixel weight (1 where the target holds, else 0).
        logits: float `[B, H, W, 2]`.
    """
    logits = tf.cast(logits, tf.float32)
    log_p = tf.nn.log_softmax(logits, axis=-1)
    t = tf.clip_by_value(tf.cast(target, tf.float32), 0.0, 1.0)
    bce = -(t * log_p[..., 1] + (1.0 - t) * log_p[..., 0])
    eps = 1e-7
    ent = -(t * tf.math.log(t + eps) + (1.0 - t) * tf.math.log(1.0 - t + eps))
    return tf.reduce_mean(tf.cast(weight, tf.float32) * (bce - ent), axis=[1, 2])
