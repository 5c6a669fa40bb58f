"""build_model: shapes, strides, a flat quantizable graph, summaries against the papers."""
from __future__ import annotations

import numpy as np
import pytest
import tf_keras

from mobile_seg.config import ModelConfig
from mobile_seg.model import build_model
from mobile_seg.model.summary import summarize, summarize_config

TINY = dict(alpha=0.35, input_size=(96, 96))


def _layer_types(model):
    return {type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_tiny_model_shapes_and_stride(output_stride):
    cfg = ModelConfig(output_stride=output_stride, **TINY)
    model = build_model(cfg)
    assert model.output_shape == (None, 96, 96, 2)
    summary = summarize(model, cfg)
    assert summary.output_stride == output_stride
    assert summary.feature_size == (96 // output_stride,) * 2
    # dilations replace the strides beyond the output stride
    dilated = [layer for layer in model.layers if getattr(layer, "dilation_rate", (1, 1)) != (1, 1)
               and layer.name.startswith("expanded_conv")]
    assert bool(dilated) == (output_stride < 32)


def test_graph_is_flat_named_and_quantization_friendly():
    model = build_model(ModelConfig(**TINY))
    assert not any(isinstance(layer, tf_keras.Model) for layer in model.layers)
    assert not _layer_types(model) & {"Lambda", "TFOpLambda", "Resizing", "SlicingOpLambda"}
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for expected in ("Conv", "expanded_conv_16_project", "image_pooling", "aspp0", "aspp3_depthwise",
                     "concat_projection", "feature_projection0", "decoder_conv1_pointwise", "logits"):
        assert expected in names
    assert model.get_layer("image_pooling_upsample").size == (6, 6)
    assert model.get_layer("logits_upsample").interpolation == "bilinear"


def test_plain_deeplabv3_without_aspp_or_decoder():
    cfg = ModelConfig(atrous_rates=(), decoder_output_stride=None, **TINY)
    model = build_model(cfg)
    names = {layer.name for layer in model.layers}
    assert "aspp1_depthwise" not in names and "decoder_conv0_depthwise" not in names
    assert model.get_layer("logits_upsample").size == (16, 16)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    assert model(x, training=False).shape == (2, 96, 96, 2)


def test_decoder_width_sets_the_decoder_convs_only():
    wide = ModelConfig(decoder_channels=256, **TINY)
    thin = ModelConfig(decoder_channels=64, **TINY)
    layer = build_model(thin).get_layer("decoder_conv1_pointwise")
    assert layer.filters == 64
    # two separable convs: (in*64 + 64*64) pointwise weights instead of (in*256 + 256*256)
    s_wide, s_thin = summarize_config(wide), summarize_config(thin)
    assert s_thin.madds < s_wide.madds
    assert ModelConfig.from_dict({k: v for k, v in wide.to_dict().items() if k != "decoder_channels"}) == wide


def test_odd_input_size_crops_back():
    cfg = ModelConfig(alpha=0.35, input_size=(97, 129), num_classes=3)
    model = build_model(cfg)
    assert model.output_shape == (None, 97, 129, 3)
    assert summarize(model, cfg).output_stride == 16


def test_published_mobilenetv2_deeplabv3_size():
    """MobileNetV2 paper, Table 7: DeepLabV3 'MNet V2*' OS16, no ASPP: 2.11 M params, 2.75 B MAdds."""
    cfg = ModelConfig(alpha=1.0, output_stride=16, atrous_rates=(), decoder_output_stride=None,
                      num_classes=21, input_size=(513, 513))
    s = summarize_config(cfg)
    assert s.output_stride == 16 and s.feature_size == (33, 33)
    assert s.trainable_params == pytest.approx(2.11e6, rel=0.01)
    assert s.madds == pytest.approx(2.75e9, rel=0.01)
    assert "2.74 B at 513x513" in s.format()


def test_xception65_builds_at_513_with_expected_stride():
    cfg = ModelConfig(backbone="xception65", input_size=(513, 513), num_classes=21)
    model = build_model(cfg)
    s = summarize(model, cfg)
    assert model.output_shape == (None, 513, 513, 21)
    assert s.output_stride == 16 and s.feature_size == (33, 33)
    assert s.params == pytest.approx(41.3e6, rel=0.02)   # DeepLab's xception_65 + ASPP + decoder
    middle = [layer for layer in model.layers if layer.name.startswith("middle_flow") and layer.name.endswith("_add")]
    assert len(middle) == 16
    assert model.get_layer("exit_flow_block1_unit_1_separable_conv3_depthwise").strides == (1, 1)
    assert model.get_layer("exit_flow_block2_unit_1_separable_conv1_depthwise").dilation_rate == (2, 2)
    assert summarize_config(cfg.replace(output_stride=8, input_size=(129, 129))).output_stride == 8


@pytest.mark.slow  # ~20 s; the QAT tests quantize our models too, this pins it to the builder
def test_tfmot_quantizes_the_graph():
    import tensorflow_model_optimization as tfmot
    cfg = ModelConfig(alpha=0.35, input_size=(64, 64))
    qmodel = tfmot.quantization.keras.quantize_model(build_model(cfg))
    x = np.zeros((1, 64, 64, 3), np.float32)
    assert qmodel(x, training=False).shape == (1, 64, 64, 2)
