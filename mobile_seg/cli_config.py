"""Command-line options generated from the config dataclasses (one source for type, default
and help: the field and its `config.option` metadata).

`config_options(ModelConfig, TrainConfig, rename={"input_size": "--crop-size"})` decorates
a click command with one option per field: default None (= not given, so lower layers —
a run's saved config, a `--config` file — keep their value), the field's default shown in
the help. `config_overrides(ModelConfig, kwargs)` pops those values back out as a dict of
the flags that were given.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click

from mobile_seg.config import NONE


def parse_size(value) -> tuple[int, int] | None:
    """'256' -> (256, 256); '144x256' or '144,256' -> (144, 256) (height x width)."""
    if value is None:
        return None
    parts = str(value).lower().replace("x", ",").split(",")
    try:
        nums = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not SIZE or HxW") from None
    if len(nums) not in (1, 2):
        raise click.BadParameter(f"{value!r} is not SIZE or HxW")
    return (nums[0], nums[-1])


def _numbers(value, cast, what: str) -> tuple:
    try:
        return tuple(cast(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of {what}") from None


def _parse(kind: str | None, value):
    """A flag's text as the field's value (None = flag not given)."""
    if value is None or kind is None:
        return value
    text = str(value).strip()
    if kind == "size":
        return parse_size(text)
    if kind == "rates":       # 'none' = no atrous branches: an empty tuple, not the default
        return () if text.lower() in (NONE, "") else _numbers(text, int, "integers")
    if kind == "int-or-none":
        if text.lower() in (NONE, "0"):
            return NONE
        return _numbers(text, int, "integers")[0] if text else NONE
    if text.lower() == NONE:
        return NONE
    if kind == "floats":
        return _numbers(text, float, "numbers")
    if kind == "rgb":
        vals = _numbers(text, float, "numbers")
        if len(vals) not in (1, 3):
            raise click.BadParameter(f"{value!r}: give one value or three (R,G,B)")
        return vals * 3 if len(vals) == 1 else vals
    if kind == "names":
        return tuple(n.strip() for n in text.split(","))
    if kind == "path":
        return str(Path(text).resolve())
    raise ValueError(f"unknown option kind {kind!r}")


def _click_type(field, hint):
    meta = field.metadata
    if meta.get("choices"):
        return click.Choice(list(meta["choices"]))
    if meta.get("kind"):
        return click.STRING
    base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(base[0], click.STRING)


def _with_default(help_: str, default: str) -> str:
    """'Encoder.' + ' (default X)' -> 'Encoder (default X).'"""
    if not default:
        return help_
    return help_[:-1] + default + "." if help_.endswith(".") else help_ + default


def _default_text(field) -> str:
    value = field.default
    if value is None or not field.metadata.get("show_default", True):
        return ""
    if isinstance(value, tuple):
        value = value[0] if len(set(value)) == 1 and len(value) != 2 else "x".join(map(str, value))
    if isinstance(value, bool):
        return ""
    return f" (default {value:g})" if isinstance(value, float) else f" (default {value})"


def flag_name(field, rename: dict | None = None) -> str:
    """The command-line flag of a config field: --field-name unless renamed."""
    return (rename or {}).get(field.name) or "--" + field.name.replace("_", "-")


def config_fields(*classes) -> list:
    return [f for cls in classes for f in dataclasses.fields(cls) if "help" in f.metadata]


def config_options(*classes, rename: dict | None = None, skip: tuple = ()):
    """Decorator: one click option per field of `classes` (except `skip`)."""
    def decorate(fn):
        for cls in reversed(classes):
            hints = typing.get_type_hints(cls)
            for field in reversed(config_fields(cls)):
                if field.name in skip:
                    continue
                flag = flag_name(field, rename)
                help_ = field.metadata["help"]
                if hints[field.name] is bool:
                    on = "on" if field.default else "off"
                    fn = click.option(f"{flag}/--no-{flag[2:]}", field.name, default=None,
                                      help=_with_default(help_, f" (default {on})"))(fn)
                    continue
                fn = click.option(flag, field.name, type=_click_type(field, hints[field.name]), default=None,
                                  metavar=field.metadata.get("metavar"),
                                  help=_with_default(help_, _default_text(field)))(fn)
        return fn
    return decorate


def config_overrides(cls, kwargs: dict, skip: tuple = ()) -> dict:
    """Pop the fields of `cls` out of a command's kwargs, parsed: {field: value or None}."""
    out = {}
    for field in config_fields(cls):
        if field.name in skip or field.name not in kwargs:
            continue
        out[field.name] = _parse(field.metadata.get("kind"), kwargs.pop(field.name))
    return out
