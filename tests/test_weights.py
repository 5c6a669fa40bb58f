"""ImageNet MobileNetV2 1.0 npz -> our backbone layers: all assigned, shapes checked, errors."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_seg.config import ModelConfig
from mobile_seg.errors import ConfigError, ModelFileError
from mobile_seg.model import build_model
from mobile_seg.model.weights import backbone_layers, load_imagenet_weights, unused_keys

CFG = ModelConfig(alpha=1.0, input_size=(128, 128))


@pytest.fixture(scope="module")
def npz(shared_data):
    return shared_data / "weights" / "mobilenet_v2_1.0_224_imagenet.npz"


@pytest.fixture(scope="module")
def loaded(npz):
    model = build_model(CFG)
    before = {v.name: v.numpy().copy() for layer in backbone_layers(model, CFG) for v in layer.weights}
    assigned = load_imagenet_weights(model, CFG, npz)
    return model, before, assigned


def test_every_backbone_variable_is_assigned(loaded, npz):
    model, before, assigned = loaded
    assert sorted(assigned) == sorted(before)            # all of them, each once
    assert len(assigned) == 255
    changed = [name for name, old in before.items() if not np.array_equal(old, _value(model, name))]
    assert sorted(changed) == sorted(before)              # none left at its init value
    assert unused_keys(npz, model, CFG) == [
        "Conv_1_BatchNorm_beta", "Conv_1_BatchNorm_gamma", "Conv_1_BatchNorm_moving_mean",
        "Conv_1_BatchNorm_moving_variance", "Conv_1_weights", "Logits_Conv2d_1c_1x1_biases"]


def _value(model, var_name):
    return next(v.numpy() for v in model.weights if v.name == var_name)


def test_values_match_the_file(loaded, npz):
    model, _, _ = loaded
    with np.load(npz) as z:
        np.testing.assert_array_equal(model.get_layer("Conv").kernel.numpy(), z["Conv_weights"])
        np.testing.assert_array_equal(model.get_layer("expanded_conv_13_depthwise").depthwise_kernel.numpy(),
                                      z["expanded_conv_13_depthwise_depthwise_weights"])
        np.testing.assert_array_equal(model.get_layer("expanded_conv_16_project_BatchNorm").moving_variance.numpy(),
                                      z["expanded_conv_16_project_BatchNorm_moving_variance"])


def test_batchnorm_statistics_fit_real_images(loaded, shared_data):
    """With the right weights and input normalisation, the pre-BN activations of real photos
    have per-channel means close to the BN moving means stored in the checkpoint."""
    import cv2
    import tf_keras
    model, _, _ = loaded
    files = sorted((shared_data / "coco_person" / "JPEGImages").glob("*.jpg"))[:16]
    x = np.stack([cv2.resize(cv2.imread(str(f))[:, :, ::-1], (128, 128)) for f in files])
    x = (x.astype(np.float32) - 127.5) / 127.5
    for name in ("expanded_conv_5_project", "expanded_conv_16_project"):
        sub = tf_keras.Model(model.input, model.get_layer(name).output)
        act = sub(x, training=False).numpy().reshape(-1, sub.output_shape[-1])
        mean = model.get_layer(f"{name}_BatchNorm").moving_mean.numpy()
        assert np.corrcoef(act.mean(0), mean)[0, 1] > 0.95


def test_other_widths_and_xception_have_no_weights(npz):
    cfg = ModelConfig(alpha=0.5, input_size=(64, 64))
    with pytest.raises(ConfigError, match="no ImageNet weights exist for mobilenetv2 alpha 0.5"):
        load_imagenet_weights(build_model(cfg), cfg, npz)


def test_missing_and_mismatching_files(tmp_path, npz):
    model = build_model(ModelConfig(alpha=1.0, input_size=(64, 64)))
    cfg = ModelConfig(alpha=1.0, input_size=(64, 64))
    with pytest.raises(ModelFileError, match="not found"):
        load_imagenet_weights(model, cfg, tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelFileError, match="not a readable .npz"):
        load_imagenet_weights(model, cfg, tmp_path / "junk.npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["expanded_conv_3_expand_weights"] = np.zeros((1, 1, 24, 100), np.float32)
    np.savez(tmp_path / "bad_shape.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"expanded_conv_3_expand_weights has shape \(1, 1, 24, 100\)"):
        load_imagenet_weights(model, cfg, tmp_path / "bad_shape.npz")
    del arrays["expanded_conv_3_expand_weights"]
    np.savez(tmp_path / "missing_key.npz", **arrays)
    with pytest.raises(ModelFileError, match="no array 'expanded_conv_3_expand_weights'"):
        load_imagenet_weights(model, cfg, tmp_path / "missing_key.npz")
