"""Quantization-aware training: configs for every layer, range calibration, run/resume/reload."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mobile_seg  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from export_helpers import TINY, mini_model, tiny_data, tiny_qat, tiny_run


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "export_session"


def test_every_layer_of_our_models_has_a_quantize_config():
    from mobile_seg.config import ModelConfig
    from mobile_seg.model import build_model
    from mobile_seg.qat import unsupported_layers
    assert unsupported_layers(build_model(ModelConfig(**TINY))) == []
    # 65 px at OS 16 also exercises the Cropping2D after the bilinear upsampling
    xception = build_model(ModelConfig(backbone="xception65", input_size=(65, 65)))
    assert unsupported_layers(xception) == []


def test_quantize_wraps_conv_bn_relu_so_bn_folds(shared_data, root):
    """Conv -> BN -> ReLU: no fake-quant between them (tfmot's transforms matched our blocks)."""
    from mobile_seg.qat import range_variables
    _, result = tiny_qat(shared_data, root)
    ranges = range_variables(result.model)
    assert "__input__" in ranges
    conv_outputs = [n for n in ranges if n in ("Conv", "Conv_BatchNorm", "expanded_conv_project")]
    assert conv_outputs == [], conv_outputs  # quantized after BN/ReLU only
    assert "Conv_relu" in ranges and "expanded_conv_project_BatchNorm" in ranges
    assert "aspp_concat" in ranges and "logits" in ranges


def test_depthwise_kernels_are_fake_quantized_per_channel_like_tflite(shared_data, root):
    """tfmot alone would simulate one scale per depthwise conv; the .tflite has one per channel."""
    import tf_keras
    _, result = tiny_qat(shared_data, root)
    wrappers = [layer for layer in result.model.layers
                if isinstance(getattr(layer, "layer", None), tf_keras.layers.DepthwiseConv2D)]
    assert len(wrappers) == 17 + 2 + 3  # 17 MobileNetV2 blocks, 2 decoder convs, 3 ASPP branches
    weight, quantizer, _ = wrappers[5]._weight_vars[0]
    kernel = weight.numpy()
    quantized = quantizer(weight, training=False, weights={}).numpy()
    steps = quantized / (np.abs(kernel).max(axis=(0, 1, 3), keepdims=True) / 127.0)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on each channel's own grid
    per_channel_max = np.abs(quantized).max(axis=(0, 1, 3))
    assert len(np.unique(per_channel_max.round(6))) > 1


def test_resizing_gets_our_quantize_config_where_tfmot_has_none():
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from mobile_seg.qat import quantize, range_variables
    model = mini_model(extra=lambda x: tf_keras.layers.Resizing(16, 16, name="resize")(x))
    with pytest.raises(RuntimeError, match="Resizing"):
        tfmot.quantization.keras.quantize_model(model)
    assert "resize" in range_variables(quantize(model))


def test_an_unquantizable_layer_is_named():
    import tf_keras
    from mobile_seg.errors import ConfigError
    from mobile_seg.qat import quantize
    model = mini_model(extra=lambda x: tf_keras.layers.Lambda(lambda t: t * 2.0, name="times_two")(x))
    with pytest.raises(ConfigError, match=r"times_two \(Lambda\)"):
        quantize(model)


def test_calibrated_ranges_make_the_qat_model_match_the_float_model():
    import tf_keras
    from mobile_seg.qat import calibrate_ranges, quantize, range_variables
    tf_keras.utils.set_random_seed(0)  # the kernels' initial values: not the earlier tests' leftovers
    model = mini_model(size=64)
    qat_model = quantize(model)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 64, 64, 3)).astype(np.float32)
    x = images[:4]
    ref = model(x, training=False).numpy()
    before = np.abs(qat_model(x, training=False).numpy() - ref).max()
    n = calibrate_ranges(qat_model, model, images)
    assert n == sum(len(v) for v in range_variables(qat_model).values())
    after = np.abs(qat_model(x, training=False).numpy() - ref).max()
    span = ref.max() - ref.min()
    # tfmot's initial ranges ([-6, 6] for weights and activations) give garbage; calibrated
    # ranges (mean of per-batch extremes, so the rarest outliers clip) track the float model
    assert after < 0.06 * span and after < before / 5, (before, after, span)
    lo, hi = range_variables(qat_model)["logits"][0]
    import tf_keras
    logits = tf_keras.Model(model.input, model.get_layer("logits").output)(images, training=False).numpy()
    assert logits.min() <= float(lo.numpy()) < 0 < float(hi.numpy()) <= logits.max()


def test_qat_run_saves_weights_and_config_reloads_and_resumes(shared_data, root, tmp_path):
    import shutil
    from mobile_seg.config import QATConfig
    from mobile_seg.qat import load_qat, qat, sync_weight_ranges
    qat_dir, result = tiny_qat(shared_data, root)
    assert result.step == 2 and result.start_step == 0
    info = json.loads((qat_dir / "qat.json").read_text())
    assert info["source_run"] == str(tiny_run(root).resolve()) and info["source_step"] == 5
    assert info["learning_rate"] == 3e-5 and info["steps"] == 2 and info["calib_images"] == 4
    assert QATConfig.from_dict(info) == QATConfig(steps=2, batch_size=2, calib_images=4)
    assert (qat_dir / "config.json").is_file() and list((qat_dir / "checkpoints").glob("ckpt-2.index"))
    assert not list(qat_dir.glob("*.keras"))
    # reload: rebuild -> quantize -> restore gives the trained QAT model's outputs exactly
    # (once the in-memory model's weight ranges catch up with its last optimizer update,
    # which load_qat does)
    model, config, step, _ = load_qat(qat_dir)
    sync_weight_ranges(result.model)
    assert step == 2 and config.input_size == TINY["input_size"]
    x = np.random.default_rng(3).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x, training=False).numpy(), result.model(x, training=False).numpy(),
                               atol=1e-6)
    # rerunning with more steps resumes from the saved step (in a copy: the shared QAT
    # folder stays as the export tests expect it)
    resumed = tmp_path / "qat"
    shutil.copytree(qat_dir, resumed)
    again = qat(tiny_run(root), tiny_data(shared_data, root), resumed,
                QATConfig(steps=3, batch_size=2, calib_images=4), progress=False)
    assert again.start_step == 2 and again.step == 3
    assert json.loads((qat_dir / "train_summary.json").read_text())["step"] == 2


def test_qat_trains_the_deployed_graph_batchnorm_frozen(shared_data, root):
    """BatchNorm normalises with the float run's moving statistics, which QAT leaves as they
    are: training mode computes what the converter folds (batch statistics would not match
    the calibrated ranges, and an unsettled run's gradients exploded: XNNPACK then refused
    the file). gamma and beta still fine-tune (they fold into the conv like the rest)."""
    import tf_keras
    from mobile_seg.checkpoint import load_run
    _, result = tiny_qat(shared_data, root)
    float_model, _, _ = load_run(tiny_run(root))
    bns = [(layer.layer, float_model.get_layer(layer.layer.name)) for layer in result.model.layers
           if isinstance(getattr(layer, "layer", None), tf_keras.layers.BatchNormalization)]
    assert len(bns) > 50
    for qat_bn, float_bn in bns:
        assert not qat_bn.trainable
        np.testing.assert_array_equal(qat_bn.moving_mean.numpy(), float_bn.moving_mean.numpy())
        np.testing.assert_array_equal(qat_bn.moving_variance.numpy(), float_bn.moving_variance.numpy())
        # 2 steps at 3e-5: gamma moves by ~1e-4, not by the 1e4 of the unfrozen explosion
        np.testing.assert_allclose(qat_bn.gamma.numpy(), float_bn.gamma.numpy(), atol=1e-2)
    qat_bn = bns[0][0]   # training mode normalises with the moving statistics, as inference does
    x = np.random.default_rng(5).normal(3.0, 2.0, (2, 8, 8, qat_bn.gamma.shape[0])).astype(np.float32)
    np.testing.assert_allclose(qat_bn(x, training=True).numpy(), qat_bn(x, training=False).numpy(), atol=1e-6)


def test_qat_refuses_a_dir_of_another_run(shared_data, root, tmp_path):
    import shutil
    from mobile_seg.config import QATConfig
    from mobile_seg.errors import ConfigError, ModelFileError
    from mobile_seg.qat import load_qat, qat
    qat_dir, _ = tiny_qat(shared_data, root)
    other_run = tmp_path / "other_run"
    shutil.copytree(tiny_run(root), other_run)
    with pytest.raises(ConfigError, match="another run"):
        qat(other_run, tiny_data(shared_data, root), qat_dir, QATConfig(steps=1))
    with pytest.raises(ModelFileError, match="qat.json"):
        load_qat(tiny_run(root))
    with pytest.raises(ModelFileError, match="not found"):
        qat(tmp_path / "missing", tiny_data(shared_data, root), tmp_path / "q")


def test_weight_decay_acts_on_the_kernels_inside_qat_wrappers():
    """QAT keeps the run's weight decay: the same conv kernels are decayed as in the float
    model (tfmot wraps each layer, so a search for Conv2D layers alone found none), and the
    decay's gradient reaches every one of them."""
    import tensorflow as tf
    from mobile_seg.config import ModelConfig
    from mobile_seg.model import build_model
    from mobile_seg.qat import quantize
    from mobile_seg.training.task import decayed_kernels, weight_decay_loss
    float_model = build_model(ModelConfig(**TINY))
    qat_model = quantize(float_model)
    float_kernels, qat_kernels = decayed_kernels(float_model), decayed_kernels(qat_model)
    assert len(float_kernels) > 40 and len(qat_kernels) == len(float_kernels)
    assert sum(type(layer).__name__ == "Conv2D" for layer in qat_model.layers) == 0   # all wrapped
    with tf.GradientTape() as tape:
        reg = weight_decay_loss(qat_kernels, 4e-5)
    grads = tape.gradient(reg, qat_kernels)
    np.testing.assert_allclose(float(reg), float(weight_decay_loss(float_kernels, 4e-5)), rtol=1e-5)
    assert float(reg) > 0
    for kernel, grad in zip(qat_kernels, grads):   # d/dw (wd * |w|^2 / 2) = wd * w
        np.testing.assert_allclose(grad.numpy(), 4e-5 * kernel.numpy(), rtol=1e-5, atol=1e-12)
