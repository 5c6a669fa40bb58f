"""The shell recipes parse, and every `mobile-seg` call in them names a real command and real flags."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from mobile_seg.cli import main
from mobile_seg.errors import run_script

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


def load_recipe_script(name: str):
    """A recipes/*.py script as a module (recipes/ is not a package)."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "recipes" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_manifest_replaces_an_entry_where_it_stands(tmp_path, monkeypatch, capsys):
    """Re-installing the default keeps it first (the demo picks the first entry); a new
    name is appended; the file's metadata gets the per-split figures."""
    import json
    import shutil
    from mobile_seg.model_metadata import read_model_file, read_record, record_metrics
    import mobile_seg.shipped as shipped
    write_manifest = load_recipe_script("write_manifest.py")
    for name in ("default.tflite", "landscape.tflite"):
        shutil.copy(shipped.MODELS_DIR / name, tmp_path / name)
    (tmp_path / "models.json").write_text(json.dumps({"models": [{"name": "default", "file": "default.tflite"},
                                                                 {"name": "landscape", "file": "landscape.tflite"}]}))
    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path)
    fig = {"person_iou": 0.8, "mean_image_iou": 0.7}
    compare = {"models": [{"name": "mp"}, {"name": "ours"}],
               "splits": {"portraits/val": {"models": {"mp": fig, "ours": {**fig, "mean_image_iou": 0.75}}}},
               "latency": {"mp": {"median_ms": 2.0}, "ours": {"median_ms": 3.0}}}
    (tmp_path / "compare.txt").write_text("progress\n" + json.dumps(compare) + "\n")
    write_manifest.main([str(tmp_path / "compare.txt"), "default", "default.tflite", "ours", "mp", "new default"])
    entries = json.loads((tmp_path / "models.json").read_text())["models"]
    assert [e["name"] for e in entries] == ["default", "landscape"]
    assert entries[0]["description"] == "new default" and entries[0]["latency_ms"]["ratio"] == 1.5
    record = read_record(read_model_file(tmp_path / "default.tflite"))
    assert record_metrics(record)["portraits/val"]["mean_image_iou"] == 0.75
    write_manifest.main([str(tmp_path / "compare.txt"), "extra", "landscape.tflite", "ours", "mp", "x"])
    assert [e["name"] for e in json.loads((tmp_path / "models.json").read_text())["models"]] == \
        ["default", "landscape", "extra"]
    capsys.readouterr()
    before = (tmp_path / "models.json").read_text()
    for argv, message in [([str(tmp_path / "compare.txt"), "a"], "expected 6 arguments"),
                          ([str(tmp_path / "nope.txt"), "d", "default.tflite", "ours", "mp", "x"],
                           "nope.txt: No such file or directory"),
                          ([str(tmp_path / "models.json"), "d", "default.tflite", "ours", "mp", "x"],
                           "its last line is not the JSON of `mobile-seg compare --json`"),
                          ([str(tmp_path / "compare.txt"), "d", "default.tflite", "theirs", "mp", "x"],
                           "compare did not measure 'theirs' (it has mp, ours)"),
                          ([str(tmp_path / "compare.txt"), "d", "none.tflite", "ours", "mp", "x"],
                           "none.tflite: no such model file")]:
        with pytest.raises(SystemExit) as e:
            run_script(write_manifest.main, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "models.json").read_text() == before


def test_failure_cases_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    failure_cases = load_recipe_script("failure_cases.py")
    model = str(Path(__file__).resolve().parents[1] / "mobile_seg" / "assets" / "models" / "default.tflite")
    for argv, message in [([model, model, str(tmp_path)], "expected MODEL, BASELINE, OUT_DIR and a dataset"),
                          ([model, "nope.tflite", str(tmp_path), "d"], "nope.tflite: no such model file"),
                          ([model, model, str(tmp_path / "out"), str(tmp_path / "nodata")], "nodata: no such built"),
                          ([model, model, str(tmp_path), "d", "--worst"], "--worst needs a value"),
                          ([model, model, str(tmp_path), "d", "--worst", "x"], "--worst takes an integer"),
                          ([model, model, str(tmp_path), "d", "--best", "3"], "unknown option --best")]:
        with pytest.raises(SystemExit) as e:
            run_script(failure_cases.main, argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
