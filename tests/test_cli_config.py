"""Command-line options come from the config dataclasses: every field has a flag, whose
help, default and parsing are the field's."""
from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from mobile_seg.cli import main
from mobile_seg.cli_config import config_overrides, flag_name
from mobile_seg.config import ExportConfig, ModelConfig, QATConfig, TrainConfig, apply_overrides

COMMANDS = {   # command path -> (config classes, renamed flags, fields left out on purpose)
    ("train",): ((ModelConfig, TrainConfig), {"input_size": "--crop-size"}, ()),
    ("qat",): ((QATConfig,), {}, ()),
    ("export",): ((ExportConfig,), {}, ()),
    ("model", "summary"): ((ModelConfig,), {"input_size": "--input-size"}, ("class_names",)),
}


def _command(path) -> click.Command:
    cmd = main
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_config_field_has_a_flag_with_the_fields_help(path):
    classes, rename, skip = COMMANDS[path]
    options = {p.name: p for p in _command(path).params if isinstance(p, click.Option)}
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.name in skip:
                continue
            assert field.name in options, f"{cls.__name__}.{field.name} has no flag on {' '.join(path)}"
            option = options[field.name]
            assert flag_name(field, rename) in option.opts
            assert option.default is None   # not given = the lower layers (run, --config) decide
            assert option.help.startswith(field.metadata["help"][:-1])


def test_train_help_shows_the_config_defaults():
    out = CliRunner().invoke(main, ["train", "--help"]).output
    assert "--momentum FLOAT" in out and "SGD momentum (default 0.9)." in out
    assert "--flip / --no-flip" in out and "--keep-checkpoints" in out and "--shuffle-buffer" in out
    assert "--end-learning-rate" in out and "--lr-power" in out


def _parsed(cls, path, argv) -> dict:
    """The overrides a command line gives (parsed by click, then by config_overrides)."""
    ctx = _command(path).make_context("x", list(argv), resilient_parsing=True)
    return {k: v for k, v in config_overrides(cls, dict(ctx.params)).items() if v is not None}


def test_flags_parse_into_config_values():
    m = _parsed(ModelConfig, ("train",), ["--crop-size", "144x256", "--atrous-rates", "none",
                                          "--decoder-output-stride", "none", "--input-mean", "0",
                                          "--class-names", "background,cat,dog", "--num-classes", "3"])
    cfg = ModelConfig.from_dict(apply_overrides(ModelConfig().to_dict(), m))
    assert cfg.input_size == (144, 256) and cfg.atrous_rates == () and cfg.decoder_output_stride is None
    assert cfg.input_mean == (0.0, 0.0, 0.0) and cfg.class_names == ("background", "cat", "dog")
    t = _parsed(TrainConfig, ("train",), ["--no-flip", "--momentum", "0.8", "--data-weights", "1,3",
                                          "--keep-checkpoints", "5", "--init-run", "rel/run"])
    tc = TrainConfig.from_dict(apply_overrides(TrainConfig().to_dict(), t))
    assert tc.flip is False and tc.momentum == 0.8 and tc.data_weights == (1.0, 3.0)
    assert tc.keep_checkpoints == 5 and tc.init_run.endswith("/rel/run") and tc.init_run.startswith("/")
    e = _parsed(ExportConfig, ("export",), ["--variant", "fp32,int8", "--input-size", "144x256"])
    ec = ExportConfig(**apply_overrides(ExportConfig().to_dict(), e))
    assert ec.variants == ("fp32", "int8") and ec.input_size == (144, 256)


def test_a_bad_value_is_one_error_line():
    result = CliRunner().invoke(main, ["export", "--run", "r", "--out", "o", "--variant", "fp64"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown variant 'fp64'; choose from fp32, fp16, dynamic, int8, qat-int8 or all"]
    result = CliRunner().invoke(main, ["qat", "--run", "r", "--data", "d", "--out", "o", "--steps", "0"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: --steps must be at least 1, got 0"
