"""What is trained: a `Task` builds the model with its starting weights; the losses, the
weight decay and the optimizer of a run are functions of its configs.

`float_task` is `mobile-seg train` (ImageNet backbone, another run's checkpoint, or
scratch); `mobile_seg.qat.qat_task` is quantization-aware fine-tuning. Both run on
`mobile_seg.training.loop.run`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.spec import IGNORE_LABEL

Log = Callable[[str], None]


@dataclass(frozen=True)
class Task:
    """A model to train and how it starts.

    make_model(resuming, log) runs inside the strategy scope and returns the Keras model:
    with `resuming` the loop restores the run's own checkpoint into it next, otherwise
    the model must hold its starting weights. `command` names the task in locks and logs.
    """

    model_config: ModelConfig
    train_config: TrainConfig
    make_model: Callable[[bool, Log], object]
    command: str = "mobile-seg train"


def float_task(model_config: ModelConfig, train_config: TrainConfig) -> Task:
    """`mobile-seg train`: the float network, from --init-run, --init-weights or scratch."""

    def make_model(resuming: bool, log: Log):
        from mobile_seg import checkpoint as ckpt_io
        from mobile_seg.model import build_model
        model = build_model(model_config)
        if resuming:
            return model
        if train_config.init_run:
            step = ckpt_io.restore_weights(model, ckpt_io.latest_checkpoint(train_config.init_run))
            log(f"initialised from {train_config.init_run} (step {step})")
        elif train_config.init_weights:
            from mobile_seg.model.weights import load_imagenet_weights
            assigned = load_imagenet_weights(model, model_config, train_config.init_weights)
            log(f"initialised {len(assigned)} backbone variables from {train_config.init_weights}")
        else:
            log(f"training {model_config.describe()} from scratch")
        return model

    return Task(model_config, train_config, make_model)


# --- losses -------------------------------------------------------------------------------------

def decayed_kernels(model) -> list:
    """The conv kernels weight decay acts on: every trainable Conv2D's, also inside tfmot's
    QAT wrappers (not BatchNorm, biases or depthwise kernels)."""
    kernels = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)   # QuantizeWrapper -> the wrapped layer
        if type(inner).__name__ == "Conv2D" and inner.trainable and layer.trainable:
            # The variable, from the outer layer (a wrapper tracks it, the wrapped layer's
            # `kernel` attribute is the fake-quantized tensor of the wrapper's last call).
            kernels += [w for w in layer.trainable_weights if w.name.split("/")[-1].startswith("kernel")]
    return kernels


def weight_decay_loss(kernels: list, weight_decay: float):
    """weight_decay x sum of the kernels' L2 (0.0 without kernels or decay)."""
    import tensorflow as tf
    if weight_decay <= 0 or not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])


def make_loss_fn(model, train_config: TrainConfig, num_replicas: int):
    """loss(logits, masks, soft_target, soft_weight) -> (data loss, total loss) of one replica.

    Data loss: per-image cross-entropy on the hard labels (255 ignored, class weights),
    plus `lovasz_weight` x the Lovász-softmax loss on them, plus `distill_weight` x the
    soft-label loss where a soft label exists; averaged over the global batch. Total: + weight decay, split over the replicas (their gradients sum).
    """
    import tensorflow as tf
    from mobile_seg.losses import lovasz_softmax, pixel_cross_entropy, soft_label_loss
    tc = train_config
    kernels = decayed_kernels(model)

    def loss(logits, masks, soft_target=None, soft_weight=None):
        per_image = pixel_cross_entropy(masks, logits, ignore_label=IGNORE_LABEL, class_weights=tc.class_weights)
        if tc.lovasz_weight > 0:
            per_image = per_image + tc.lovasz_weight * lovasz_softmax(masks, logits, ignore_label=IGNORE_LABEL)
        if soft_target is not None and tc.distill_weight > 0:
            per_image = per_image + tc.distill_weight * soft_label_loss(soft_target, soft_weight, logits)
        data_loss = tf.nn.compute_average_loss(per_image, global_batch_size=tc.batch_size)
        return data_loss, data_loss + weight_decay_loss(kernels, tc.weight_decay) / num_replicas

    return loss


# --- optimizer ----------------------------------------------------------------------------------

def poly_learning_rate(step, cfg: TrainConfig):
    """Linear warm-up to `learning_rate`, then (1 - t)^power decay to `end_learning_rate`."""
    import tensorflow as tf
    step = tf.cast(step, tf.float32)
    base, end = cfg.learning_rate, cfg.end_learning_rate
    warm = float(max(cfg.warmup_steps, 0))
    decay_steps = max(float(cfg.steps) - warm, 1.0)
    t = tf.clip_by_value((step - warm) / decay_steps, 0.0, 1.0)
    poly = (base - end) * tf.pow(1.0 - t, cfg.lr_power) + end
    if warm > 0:
        return tf.where(step < warm, base * (step + 1.0) / warm, poly)
    return poly


def make_optimizer(cfg: TrainConfig):
    """SGD with momentum (or Adam) on the poly schedule."""
    import tf_keras

    class PolyWithWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return poly_learning_rate(step, cfg)

        def get_config(self):
            return cfg.to_dict()

    if cfg.optimizer == "adam":
        return tf_keras.optimizers.Adam(learning_rate=PolyWithWarmup())
    return tf_keras.optimizers.SGD(learning_rate=PolyWithWarmup(), momentum=cfg.momentum)
