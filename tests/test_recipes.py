"""The shell recipes parse, and every `mobile-seg` call in them names a real command and real flags."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from mobile_seg.cli import main

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.sh"))


def mobile_seg_calls(script: str) -> list[list[str]]:
    """The argument lists of every `mobile-seg ...` call (continuation lines joined, up to | ; && or #)."""
    text = script.replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        for m in re.finditer(r"(?:^|[\s;&|(])mobile-seg\s+([^|;#&]*)", line):
            calls.append(shlex.split(m.group(1).replace("$", "X"), posix=True))
    return calls


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The click command a call names and the rest of its words."""
    command: click.Command = main
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def problems(name: str, script: str) -> list[str]:
    """What is wrong with the `mobile-seg` calls of a script: unknown commands and flags."""
    out = []
    for words in mobile_seg_calls(script):
        command, rest = resolve(words)
        if isinstance(command, click.Group):
            out.append(f"{name}: not a command: mobile-seg {' '.join(words)}")
            continue
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        out += [f"{name}: mobile-seg {command.name} has no {w}" for w in rest
                if w.startswith("--") and w.split("=", 1)[0] not in known]
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses_and_calls_real_commands_and_flags(recipe):
    assert subprocess.run(["bash", "-n", str(recipe)], capture_output=True).returncode == 0
    text = recipe.read_text()
    calls = mobile_seg_calls(text)
    assert len(calls) >= 5, f"{recipe.name}: {len(calls)} mobile-seg calls found"
    assert problems(recipe.name, text) == []


def test_the_check_catches_unknown_flags_and_commands():
    script = ("for d in a b; do\n  mobile-seg data build \"$d\" --out \"$B/$d\" --binary\ndone\n"
              "[ -f x ] || mobile-seg train --data d --no-such-flag 3 \\\n  --out o | tee log\n"
              "mobile-seg data frobnicate --out o\n")
    assert mobile_seg_calls(script)[1] == ["train", "--data", "d", "--no-such-flag", "3", "--out", "o"]
    assert problems("r.sh", script) == ["r.sh: mobile-seg train has no --no-such-flag",
                                        "r.sh: not a command: mobile-seg data frobnicate --out o"]
