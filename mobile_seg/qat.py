"""Quantization-aware fine-tuning (tfmot, Keras 2) of a trained DeepLab run.

`qat(run_dir, data_dir, out_dir)` rebuilds the float model of a training run, restores its
newest checkpoint, wraps it for 8-bit quantization-aware training (`quantize`), sets every
activation range from calibration images (`calibrate_ranges`), and fine-tunes it as a task
(`qat_task`) on the training loop of `mobile_seg.training` (same input pipeline, losses
with weight decay on the wrapped kernels, checkpoints, resume, SIGTERM handling) at a
small learning rate (DeepLab's recipe: 3e-5). Settings: `mobile_seg.config.QATConfig`.

How the graph is quantized:
- tfmot's default 8-bit scheme: per-channel weights for Conv2D and DepthwiseConv2D,
  per-tensor activations. Its transforms recognise our Conv -> BatchNorm [-> ReLU/ReLU6]
  blocks (`mobile_seg.model.blocks`) and leave them unquantized in between, so the
  converter folds BN into the conv and fuses the activation; every other layer of our
  models (Add, Concatenate, GlobalAveragePooling2D, UpSampling2D nearest/bilinear,
  Cropping2D, Dropout) has a default config. Layers it has none for get ours from
  `CUSTOM_CONFIGS` (Resizing: quantize the output, as TFLite's int8 RESIZE_* needs); any
  other unsupported layer is reported by name before anything is trained.
- BatchNorm statistics are frozen while fine-tuning (`freeze_batchnorm`: moving mean and
  variance, also in training mode): training runs the graph the converter folds, on the
  ranges calibrated from it.
- Range initialisation: tfmot starts every activation range at [-6, 6] and moves it by
  an EMA with decay 0.999, so after 500 steps 60 % of the range is still the initial
  guess. `calibrate_ranges` sets them from the float model's activations on training
  images first (what post-training quantization sees), so QAT starts where PTQ ends.

A QAT `.keras` file does not reload, so QAT_DIR holds weights + config: `config.json`
(the ModelConfig), `checkpoints/` (tf.train checkpoints of the quantized model) and
`qat.json` (source run and step, QAT settings). `load_qat` rebuilds, quantizes and restores.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mobile_seg import checkpoint as ckpt_io
from mobile_seg.config import ModelConfig, QATConfig, TrainConfig
from mobile_seg.errors import ConfigError, ModelFileError
from mobile_seg.io_utils import check_output_path, write_json_atomic
from mobile_seg.locks import folder_lock, note_stale
from mobile_seg.training.task import Task

QAT_FILE = "qat.json"
QAT_FORMAT = "mobile-seg-qat/1"
CALIB_BATCH = 8
BATCHNORM = "moving statistics, frozen"
SCHEME = "tfmot default 8-bit, per-channel Conv2D and DepthwiseConv2D weights"


def _tfmot():
    import tensorflow_model_optimization as tfmot  # after mobile_seg set TF_USE_LEGACY_KERAS
    return tfmot


def custom_configs() -> dict:
    """{layer class: QuantizeConfig factory} for layers tfmot's default registry lacks."""
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs)
    return {tf_keras.layers.Resizing: configs.Default8BitOutputQuantizeConfig}


def _scope_objects() -> dict:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs)
    return {"Default8BitOutputQuantizeConfig": configs.Default8BitOutputQuantizeConfig,
            "NoOpQuantizeConfig": configs.NoOpQuantizeConfig}


def unsupported_layers(model) -> list[str]:
    """'name (Class)' of every layer neither tfmot's default registry nor we can quantize."""
    import tf_keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_mod)
    registry = registry_mod.Default8BitQuantizeRegistry()
    ours = tuple(custom_configs())
    bad = []
    for layer in model.layers:
        if isinstance(layer, (tf_keras.layers.InputLayer, tf_keras.layers.BatchNormalization)):
            continue  # Input gets a QuantizeLayer; BN is folded by the Conv+BN transforms
        if isinstance(layer, tf_keras.Model):
            bad.append(f"{layer.name} (nested model: build one flat graph)")
        elif not registry.supports(layer) and not isinstance(layer, ours):
            bad.append(f"{layer.name} ({type(layer).__name__})")
    return bad


def quantize(model):
    """The QAT version of a flat functional tf_keras model (float weights copied).

    Raises ConfigError naming the layers that cannot be quantized.
    """
    import tf_keras
    tfmot = _tfmot()
    bad = unsupported_layers(model)
    if bad:
        raise ConfigError(f"cannot quantize layer(s) {', '.join(bad[:5])}: no QuantizeConfig "
                          f"(add one to mobile_seg.qat.custom_configs)")
    table = custom_configs()
    annotate_layer = tfmot.quantization.keras.quantize_annotate_layer

    def annotate(layer):
        for cls, make in table.items():
            if isinstance(layer, cls):
                return annotate_layer(layer, quantize_config=make())
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        return annotate_layer(layer)

    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    with tfmot.quantization.keras.quantize_scope(_scope_objects()):
        qat_model = tfmot.quantization.keras.quantize_apply(annotated)
    use_per_channel_depthwise(qat_model)
    return qat_model


def per_channel_depthwise_quantizer():
    """Fake-quantizes a DepthwiseConv2D kernel [kh, kw, C, M] per channel, as TFLite stores it.

    tfmot's per-axis weight quantizer works on the LAST axis, which is the depth multiplier
    (1) of a depthwise kernel: it simulates ONE scale per depthwise conv, while the converter
    writes one scale per channel. QAT then trains against a grid the phone never uses. This
    quantizer rounds each channel to its own symmetric int8 grid (scale = max|w_c| / 127,
    TFLite's rule), with a straight-through gradient; the rounded weights constant-fold
    into the graph, and the converter's per-channel quantization reproduces them exactly
    (BatchNorm folding scales a channel's grid, it does not move values off it).
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras.quantizers import Quantizer

    class PerChannelDepthwiseQuantizer(Quantizer):
        def build(self, tensor_shape, name, layer):
            return {}

        def __call__(self, inputs, training, weights, **kwargs):
            scale = tf.reduce_max(tf.abs(inputs), axis=[0, 1, 3], keepdims=True) / 127.0
            scale = tf.maximum(scale, 1e-12)
            rounded = tf.clip_by_value(tf.round(inputs / scale), -127.0, 127.0) * scale
            return inputs + tf.stop_gradient(rounded - inputs)

        def get_config(self):
            return {}

    return PerChannelDepthwiseQuantizer()


def use_per_channel_depthwise(qat_model) -> int:
    """Swap the weight quantizer of every quantized DepthwiseConv2D for the per-channel one.

    Done on the built wrappers (tfmot 0.8.1's `_weight_vars`): annotating the layer with a
    custom QuantizeConfig instead would stop tfmot's Conv+BN transforms from matching it,
    and BatchNorm would no longer fold. The wrapper's old range variables stay (unused), so
    checkpoints keep one layout. Returns the number of layers changed.
    """
    import tf_keras
    n = 0
    for layer in qat_model.layers:
        if isinstance(getattr(layer, "layer", None), tf_keras.layers.DepthwiseConv2D):
            layer._weight_vars = [(w, per_channel_depthwise_quantizer(), qvars)
                                  for w, _old, qvars in layer._weight_vars]
            n += 1
    return n


def range_variables(qat_model) -> dict[str, list[tuple]]:
    """{float layer name: [(min_var, max_var), ...]} for every activation-range quantizer.

    The input's QuantizeLayer is keyed "__input__". Read from the wrappers' quantizer
    attributes (variable names change when several models are quantized in one process).
    """
    out: dict[str, list[tuple]] = {}

    def add(key, qvars):
        if isinstance(qvars, dict) and "min_var" in qvars and "max_var" in qvars:
            out.setdefault(key, []).append((qvars["min_var"], qvars["max_var"]))

    for layer in qat_model.layers:
        if type(layer).__name__ == "QuantizeLayer":
            add("__input__", getattr(layer, "quantizer_vars", None))
            continue
        inner = getattr(layer, "layer", None)
        if inner is None:
            continue
        for activation in getattr(layer, "_quantize_activations", []):
            add(inner.name, getattr(activation, "_pre_activation_vars", None))
            add(inner.name, getattr(activation, "_post_activation_vars", None))
        add(inner.name, getattr(layer, "_output_quantizer_vars", None))
    return out


def sync_weight_ranges(qat_model) -> int:
    """Set every weight quantizer's (per-channel) range from the current weights.

    tfmot's weight quantizers store their range in variables that only a training step
    updates (initially [-6, 6]): a freshly quantized model, or the last optimizer update
    of a QAT run, would otherwise be evaluated and converted with stale ranges.
    Returns the number of weight tensors synced.
    """
    n = 0
    for layer in qat_model.layers:
        for weight, quantizer, quantizer_vars in getattr(layer, "_weight_vars", []):
            quantizer(weight, training=True, weights=quantizer_vars)  # LastValueQuantizer: assigns
            n += 1
    return n


def calibrate_ranges(qat_model, float_model, images: np.ndarray, batch_size: int = CALIB_BATCH) -> int:
    """Set every activation range of `qat_model` from `float_model`'s activations on `images`
    (and its weight ranges from its weights, `sync_weight_ranges`).

    Ranges are the mean over batches of each batch's min/max (widened to include 0), the
    value tfmot's moving average converges to. Returns the number of activation ranges set.
    """
    sync_weight_ranges(qat_model)
    import tensorflow as tf
    import tf_keras
    targets = range_variables(qat_model)
    names = [n for n in targets if n != "__input__"]
    missing = [n for n in names if n not in {layer.name for layer in float_model.layers}]
    if missing:
        raise ModelFileError(f"QAT layers without a float twin: {', '.join(missing[:5])}")
    probe = tf_keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    forward = tf.function(lambda x: probe(x, training=False))
    lo = {n: [] for n in names + ["__input__"]}
    hi = {n: [] for n in names + ["__input__"]}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].astype(np.float32)
        outs = forward(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, y in zip(names, outs):
            y = y.numpy()
            lo[n].append(min(float(y.min()), 0.0))
            hi[n].append(max(float(y.max()), 0.0))
        lo["__input__"].append(min(float(x.min()), 0.0))
        hi["__input__"].append(max(float(x.max()), 0.0))
    count = 0
    for n, pairs in targets.items():
        if not lo[n]:
            continue
        vmin, vmax = float(np.mean(lo[n])), float(np.mean(hi[n]))
        if n == "__input__":  # AllValuesQuantizer keeps the extremes, not an average
            vmin, vmax = float(np.min(lo[n])), float(np.max(hi[n]))
        for min_var, max_var in pairs:
            min_var.assign(vmin)
            max_var.assign(vmax)
            count += 1
    return count


# --- QAT_DIR ------------------------------------------------------------------------------------

def read_qat_info(qat_dir: str | os.PathLike) -> dict:
    path = ckpt_io.output_file(qat_dir, QAT_FILE, "QAT", "mobile-seg qat")
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise ModelFileError(f"not valid JSON ({e})", path) from None
    if info.get("format") != QAT_FORMAT:
        raise ModelFileError(f"format is not {QAT_FORMAT}", path)
    return info


def build_qat_model(config: ModelConfig):
    """A freshly initialised QAT model of `config` (weights to be restored)."""
    from mobile_seg.model import build_model
    return quantize(build_model(config))


def restore_qat_weights(model, prefix: str) -> int:
    """Restore a QAT checkpoint into a rebuilt QAT model; return its step.

    (Not `checkpoint.restore_weights`: its pre-check maps variable names to checkpoint
    keys, and tfmot names the input quantizer's variables after the layer instance.)
    """
    import tensorflow as tf
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    try:
        status = tf.train.Checkpoint(model=model, step=step).restore(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        msg = str(e).strip().splitlines()[0][:200]
        raise ModelFileError(f"checkpoint does not fit the QAT model of config.json ({msg})", prefix) from None
    return int(step.numpy())


def load_qat(qat_dir: str | os.PathLike, checkpoint: str | None = None,
             input_size: tuple[int, int] | None = None):
    """Rebuild, quantize and restore a QAT run: (qat_model, config, step, qat_info).

    `input_size` rebuilds the network at another fixed size (the weights fit any size).
    """
    info = read_qat_info(qat_dir)
    config = ckpt_io.read_run_config(qat_dir)
    if input_size is not None:
        config = config.replace(input_size=tuple(input_size))
    prefix = checkpoint or ckpt_io.latest_checkpoint(qat_dir)
    if prefix is None:
        raise ModelFileError(f"no checkpoint in {Path(qat_dir) / ckpt_io.CHECKPOINT_DIR}: "
                             f"run `mobile-seg qat` first", qat_dir)
    model = build_qat_model(config)
    step = restore_qat_weights(model, prefix)
    sync_weight_ranges(model)  # the last optimizer update came after the last range update
    return model, config, step, info


# --- fine-tuning --------------------------------------------------------------------------------

def qat_train_config(run_dir, config: QATConfig) -> TrainConfig:
    """The run's own TrainConfig (split, batch, augmentation, data weights, distillation,
    optimizer, weight decay) retargeted at QAT: `config.steps` steps of poly decay from
    `config.learning_rate`, no warm-up, no ImageNet init, one device."""
    base = ckpt_io.read_train_config(run_dir) or TrainConfig()
    changes = dict(steps=config.steps, learning_rate=config.learning_rate, warmup_steps=0,
                   init_weights=None, init_run=None, strategy="default",
                   checkpoint_every=config.checkpoint_every or min(base.checkpoint_every, config.steps))
    for name in ("batch_size", "weight_decay"):
        if getattr(config, name) is not None:
            changes[name] = getattr(config, name)
    return base.replace(**changes)


def freeze_batchnorm(qat_model) -> int:
    """Run every BatchNorm of a QAT model on its moving statistics, also in training mode, and
    stop updating them (gamma and beta still train: they fold into the conv); return how many.

    The converter folds BN with the moving statistics, and `calibrate_ranges` sets the
    activation ranges from the float model in inference mode: QAT must train that same
    graph. In training mode BN normalises with batch statistics instead; where those differ
    from the moving ones (a run whose statistics have not settled: 20 steps from scratch)
    the calibrated ranges clip most activations, the first step's gradients reach 1e9, BN
    gammas and variances explode, and the converted file has requantization scales
    (input x weight / output scale) up to 1e9 that XNNPACK refuses (it needs < 256).
    Keras 2 runs a BN layer with trainable=False in inference mode (tfmot's wrapper keeps
    gamma and beta among its trainable weights).
    """
    import tf_keras
    n = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, tf_keras.layers.BatchNormalization):
            inner.trainable = False
            n += 1
    return n


def qat_task(run_dir: Path, data_dir, config: QATConfig, model_config: ModelConfig,
             train_config: TrainConfig) -> Task:
    """The QAT task: float run -> quantize -> freeze BatchNorm -> calibrate ranges (a fresh
    start; resuming, the loop restores OUT_DIR's QAT checkpoint into a fresh QAT model)."""

    def make_model(resuming: bool, log):
        if resuming:
            qat_model = build_qat_model(model_config)
            freeze_batchnorm(qat_model)
            return qat_model
        from mobile_seg.data.calibration import load_calibration_images
        float_model, _, step = ckpt_io.load_run(run_dir)
        qat_model = quantize(float_model)
        freeze_batchnorm(qat_model)
        if config.calib_images > 0:
            images = load_calibration_images(data_dir, model_config, config.calib_images, split="train")
            n = calibrate_ranges(qat_model, float_model, images)
            log(f"quantized {run_dir} (step {step}); {n} activation ranges calibrated on "
                f"{len(images)} training images")
        else:
            log(f"quantized {run_dir} (step {step}); activation ranges start at tfmot's [-6, 6]")
        return qat_model

    return Task(model_config, train_config, make_model, command="mobile-seg qat")


def check_qat_dirs(run_dir: Path, out_dir: Path) -> tuple[ModelConfig, str]:
    """The source run's ModelConfig and newest checkpoint; refuses an OUT that is the run or
    holds QAT of another."""
    check_output_path(out_dir, "dir")
    model_config = ckpt_io.read_run_config(run_dir)
    source_ckpt = ckpt_io.latest_checkpoint(run_dir)
    if source_ckpt is None:
        raise ModelFileError(f"no checkpoint in {run_dir / ckpt_io.CHECKPOINT_DIR}", run_dir)
    if out_dir.resolve() == run_dir.resolve():
        raise ConfigError("--out must differ from --run: QAT checkpoints would mix with the float run's")
    if (out_dir / QAT_FILE).is_file():
        previous = read_qat_info(out_dir)
        if previous.get("source_run") != str(run_dir.resolve()):
            raise ConfigError(f"{out_dir} holds QAT of another run ({previous.get('source_run')}); "
                              f"use another --out")
    return model_config, source_ckpt


def qat(run_dir: str | os.PathLike, data_dir, out_dir: str | os.PathLike, config: QATConfig | None = None,
        *, progress: bool = True, stream=None, **loop_options):
    """Quantization-aware fine-tuning of `run_dir`'s newest checkpoint into `out_dir`, on the
    training loop (`mobile_seg.training.loop.run`). OUT/qat.json records the source and the
    QATConfig. Rerunning the same command resumes from `out_dir`'s newest checkpoint.
    Returns the TrainResult (its `.model` is the QAT Keras model).
    """
    import sys
    from mobile_seg.training.loop import run
    config = config or QATConfig()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    stream = stream or sys.stderr
    model_config, source_ckpt = check_qat_dirs(run_dir, out_dir)
    tcfg = qat_train_config(run_dir, config)
    with folder_lock(out_dir, "mobile-seg qat") as lock:  # run() takes it again (re-entrant)
        if progress:
            note_stale(lock, stream)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / QAT_FILE, {
            "format": QAT_FORMAT, "source_run": str(run_dir.resolve()),
            "source_step": ckpt_io.checkpoint_step(source_ckpt), "source_checkpoint": source_ckpt,
            **config.to_dict(), "batchnorm": BATCHNORM, "scheme": SCHEME})  # + train_config.json: in effect
        task = qat_task(run_dir, data_dir, config, model_config, tcfg)
        return run(task, data_dir, out_dir, progress=progress, stream=stream, **loop_options)
