"""ModelConfig / TrainConfig: defaults, derived values, validation, JSON round trips."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobile_seg.config import ModelConfig, TrainConfig, default_atrous_rates, load_config_file
from mobile_seg.errors import ConfigError


def test_defaults_and_derived_rates():
    cfg = ModelConfig()
    assert (cfg.backbone, cfg.alpha, cfg.output_stride, cfg.decoder_output_stride) == ("mobilenetv2", 1.0, 16, 4)
    assert cfg.bn_momentum == 0.97 and cfg.bn_epsilon == 1e-3
    assert cfg.resolved_atrous_rates == (6, 12, 18)
    assert ModelConfig(output_stride=8).resolved_atrous_rates == (12, 24, 36)
    assert ModelConfig(output_stride=32).resolved_atrous_rates == (3, 6, 9)
    assert default_atrous_rates(16) == (6, 12, 18)
    assert ModelConfig(atrous_rates=()).resolved_atrous_rates == ()
    assert ModelConfig(atrous_rates=[1, 2, 3]).atrous_rates == (1, 2, 3)
    assert ModelConfig(input_size=513).input_size == (513, 513)
    assert ModelConfig(input_size=(513, 513)).feature_size(16) == (33, 33)


def test_round_trip(tmp_path):
    cfg = ModelConfig(backbone="mobilenetv2", alpha=0.35, output_stride=8, atrous_rates=(),
                      decoder_output_stride=None, num_classes=3, input_size=(96, 128), bn_momentum=0.9)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["format"] == "mobile-seg-model/1"
    tc = TrainConfig(steps=10, class_weights=(1, 2), init_weights=tmp_path / "w.npz")
    tc.save(tmp_path / "train_config.json")
    assert TrainConfig.load(tmp_path / "train_config.json") == tc


@pytest.mark.parametrize("kwargs, message", [
    (dict(backbone="resnet50"), "unknown backbone 'resnet50'"),
    (dict(alpha=0.6), "alpha 0.6 not supported"),
    (dict(backbone="xception65", alpha=0.5), "xception65 needs alpha 1.0"),
    (dict(output_stride=4), "output stride must be one of 8, 16, 32"),
    (dict(decoder_output_stride=8), "decoder output stride must be 4 or none"),
    (dict(num_classes=1), "num_classes must be at least 2"),
    (dict(input_size=(16, 16)), "too small for output stride 16"),
    (dict(input_size=(48, 48), output_stride=32), "too small for output stride 32"),
    (dict(input_size=(250, 256)), "input height 250 does not fit output stride 16"),
    (dict(atrous_rates=(0, 6)), "atrous rates must be positive"),
    (dict(decoder_channels=4), "decoder channels must be at least 8"),
])
def test_model_config_errors_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as e:
        ModelConfig(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_sizes_fitting_the_stride():
    assert ModelConfig(input_size=(513, 513)).feature_size(16) == (33, 33)   # DeepLab's k * 16 + 1
    assert ModelConfig(input_size=(144, 256)).feature_size(16) == (9, 16)    # multiples of 16
    assert ModelConfig(input_size=(96, 96), output_stride=32).feature_size(32) == (3, 3)
    with pytest.raises(ConfigError, match="does not fit output stride 16"):
        ModelConfig(input_size=(100, 100))                                   # neither


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch-size must be at least 1"),
    (dict(strategy="tpu"), "unknown strategy 'tpu'"),
    (dict(learning_rate=0), "learning-rate must be positive"),
    (dict(class_weights=(0, 0)), "class weights"),
    (dict(min_scale=2.0, max_scale=1.0), "min-scale"),
    (dict(base_resize="crop"), "unknown base resize"),
])
def test_train_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_from_dict_rejects_unknown_fields(tmp_path):
    with pytest.raises(ConfigError, match="unknown model config field"):
        ModelConfig.from_dict({"backbone": "mobilenetv2", "depth": 3})
    with pytest.raises(ConfigError, match="unknown train config field"):
        TrainConfig.from_dict({"epochs": 3})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.load(bad)


def test_config_file_and_diff(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"alpha": 0.5}, "train": {"steps": 7}}))
    assert load_config_file(path) == ({"alpha": 0.5}, {"steps": 7})
    path.write_text(json.dumps({"alpha": 0.5}))
    assert load_config_file(path) == ({"alpha": 0.5}, {})
    diff = ModelConfig(alpha=0.35).diff(ModelConfig(alpha=0.5, decoder_output_stride=None))
    assert diff == ["alpha: 0.35 in the run, 0.5 asked", "decoder_output_stride: 4 in the run, none asked"]


def test_every_shipped_config_is_valid_and_the_recipes_name_existing_ones():
    import re
    root = Path(__file__).resolve().parents[1]
    configs = sorted((root / "mobile_seg" / "configs").glob("*.json"))
    assert configs
    for path in configs:
        model_fields, train_fields = load_config_file(path)
        model, train = ModelConfig.from_dict(model_fields), TrainConfig.from_dict(train_fields)
        assert model.input_size[0] == model.input_size[1] == int(re.search(r"_(\d+)\.json$", path.name)[1])
        assert train.data_weights and min(train.data_weights) > 0
    named = {m for r in (root / "recipes").glob("*.sh") for m in re.findall(r"mobile_seg/configs/\w+\.json",
                                                                           r.read_text())}
    assert named and all((root / n).is_file() for n in named), named
