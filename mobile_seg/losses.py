"""Training losses: softmax cross-entropy over pixels that ignores the ignore label (255),
the Lovász-softmax surrogate of per-image IoU, and the soft-label (distillation) loss
towards a teacher's person probability."""
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


def lovasz_softmax(labels, logits, *, ignore_label: int = IGNORE_LABEL):
    """Per-image Lovász-softmax loss (Berman et al., CVPR 2018): a convex surrogate of
    1 − IoU, averaged over the classes present in the image's labelled pixels.

    For each class, pixels are sorted by their error |[label = c] − p_c| (descending) and
    the errors weighted by the gradient of the Jaccard loss along that order, so the loss
    is the Lovász extension of 1 − IoU_c at the error vector. Cross-entropy weighs every
    pixel alike, so a small person is worth little; this weighs each image's IoU alike,
    which is what per-image mean IoU counts. An image without a person still gets the
    background class's term (false alarms cost).

    Args:
        labels: int `[B, H, W]` class indices; `ignore_label` pixels contribute nothing.
        logits: float `[B, H, W, C]`.

    Returns:
        float32 `[B]` losses in [0, 1] (0 for an image with no labelled pixel).
    """
    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    batch = tf.shape(logits)[0]
    labels = tf.reshape(tf.cast(labels, tf.int32), [batch, -1])                  # [B, N]
    probs = tf.reshape(tf.nn.softmax(logits, axis=-1), [batch, -1, num_classes])
    probs = tf.transpose(probs, [0, 2, 1])                                       # [B, C, N]
    valid = tf.logical_and(tf.not_equal(labels, ignore_label), labels < num_classes)
    onehot = tf.one_hot(tf.where(valid, labels, -1), num_classes, axis=1)       # [B, C, N]; 0 where invalid
    valid_f = tf.cast(valid, tf.float32)[:, None, :]
    errors = tf.abs(onehot - probs) * valid_f          # ignored pixels: error 0, sorted last
    order = tf.argsort(tf.stop_gradient(errors), axis=-1, direction="DESCENDING")
    errors_sorted = tf.gather(errors, order, batch_dims=2)
    fg_sorted = tf.gather(onehot, order, batch_dims=2)
    # Gradient of the Jaccard loss along the order (Berman's lovasz_grad), a constant.
    gts = tf.reduce_sum(fg_sorted, axis=-1, keepdims=True)
    intersection = gts - tf.cumsum(fg_sorted, axis=-1)
    union = gts + tf.cumsum(1.0 - fg_sorted, axis=-1)
    jaccard = 1.0 - intersection / union                 # union >= 1 from the first pixel on
    grad = tf.concat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
    per_class = tf.reduce_sum(errors_sorted * tf.stop_gradient(grad), axis=-1)  # [B, C]
    present = tf.cast(gts[..., 0] > 0, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_class * present, axis=-1),
                                 tf.reduce_sum(present, axis=-1))
