"""`data check`: passes on the real shared datasets, names the file and problem on broken copies."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mobile_seg.cli import main
from conftest import copy_voc
from mobile_seg.data.check import BadFile, check_dataset, format_report, image_size
from mobile_seg.data.palette import colorize

N_TRAIN, N_VAL = 4, 2




def run_check(*args: str):
    result = CliRunner().invoke(main, ["data", "check", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def voc(tmp_path, shared_data):
    """A 6-pair copy of portraits (train 4, val 2): (root, splits)."""
    root = tmp_path / "ds"
    return root, copy_voc(shared_data / "portraits", root, N_TRAIN, N_VAL)


@pytest.mark.parametrize("name", ["portraits", "coco_person"])
def test_real_datasets_pass_with_counts(shared_data, name):
    root = shared_data / name
    result = run_check(root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    expected = {p.stem: len(p.read_text().split()) for p in (root / "ImageSets/Segmentation").glob("*.txt")}
    assert report["splits"] == expected and report["usable"] == expected
    assert report["ok"] and report["problem_count"] == 0
    assert report["checked"] == expected["trainval"]
    assert set(report["class_pixels"]) == {"0", "1"}
    assert "problems:     none" in result.output
    assert f"train {expected['train']}" in result.output


def test_clean_copy_passes(voc):
    root, _ = voc
    result = run_check(root)
    assert result.exit_code == 0, result.output
    assert f"train {N_TRAIN}, val {N_VAL}" in result.output


def _truncate_image(root, ids):
    p = root / "JPEGImages" / f"{ids['train'][0]}.jpg"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p.name, "undecodable-image", "does not decode"


def _delete_mask(root, ids):
    p = root / "SegmentationClass" / f"{ids['train'][1]}.png"
    p.unlink()
    return p.name, "missing-mask", "missing mask"


def _resize_mask(root, ids):
    p = root / "SegmentationClass" / f"{ids['train'][2]}.png"
    with Image.open(p) as im:
        im.resize((im.width - 10, im.height), Image.NEAREST).save(p)
    return p.name, "size-mismatch", "but its image"


def _label_7(root, ids):
    p = root / "SegmentationClass" / f"{ids['val'][0]}.png"
    with Image.open(p) as im:
        a = np.array(im)
        a[:5, :5] = 7
        out = Image.fromarray(a)
        out.putpalette(im.getpalette())
        out.save(p)
    return p.name, "bad-label", "label values 7 outside 0..1"


def _zero_255(root, ids):
    p = root / "SegmentationClass" / f"{ids['val'][1]}.png"
    with Image.open(p) as im:
        Image.fromarray((np.array(im) * 255).astype(np.uint8)).save(p)
    return p.name, "zero-255-mask", "255 is the ignore label"


def _rgb_mask(root, ids):
    p = root / "SegmentationClass" / f"{ids['train'][3]}.png"
    with Image.open(p) as im:
        Image.fromarray(colorize(np.array(im))).save(p)
    return p.name, "rgb-mask", "--colour-map"


def _empty_split(root, ids):
    (root / "ImageSets/Segmentation/val.txt").write_text("")
    return "val.txt", "empty-split", "lists no ids"


def _absent_id(root, ids):
    with open(root / "ImageSets/Segmentation/train.txt", "a") as f:
        f.write("ghost_007\n")
    return "train.txt", "missing-id", "ghost_007"


def _duplicate_id(root, ids):
    with open(root / "ImageSets/Segmentation/val.txt", "a") as f:
        f.write(f"{ids['val'][0]}\n")
    return "val.txt", "duplicate-id", "is listed 2 times"


def _orphan_mask(root, ids):
    shutil.copy(root / "SegmentationClass" / f"{ids['train'][0]}.png", root / "SegmentationClass/orphan.png")
    return "orphan.png", "mask-without-image", "has no image"


def _no_split_files(root, ids):
    shutil.rmtree(root / "ImageSets")
    return "Segmentation", "missing-splits", "no split files"


def _garbage_mask(root, ids):
    (root / "SegmentationClass" / f"{ids['val'][0]}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return f"{ids['val'][0]}.png", "undecodable-mask", "does not decode"


@pytest.mark.parametrize("breaker", [
    _truncate_image, _delete_mask, _resize_mask, _label_7, _zero_255, _rgb_mask, _empty_split,
    _absent_id, _duplicate_id, _orphan_mask, _no_split_files, _garbage_mask], ids=lambda f: f.__name__[1:])
def test_broken_copy_is_caught(voc, breaker):
    root, ids = voc
    filename, kind, phrase = breaker(root, ids)
    result = run_check(root, "--json")
    assert result.exit_code == 1, result.output
    problem_lines = [ln for ln in result.output.splitlines() if filename in ln]
    assert problem_lines, result.output
    assert kind in result.output and phrase in result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert not report["ok"]
    assert any(filename in p["file"] and p["kind"] == kind for p in report["problems"])
    assert report["problem_kinds"] == {kind: 1}


def test_truncated_jpeg_is_detected_at_any_cut(shared_data, tmp_path):
    data = (shared_data / "portraits/JPEGImages/portrait_001.jpg").read_bytes()
    for keep in (len(data) // 3, len(data) - 100, len(data) - 2, len(data) - 1):
        p = tmp_path / f"cut{keep}.jpg"
        p.write_bytes(data[:keep])
        with pytest.raises(BadFile, match="does not decode"):
            image_size(p)
    (tmp_path / "ok.jpg").write_bytes(data)
    assert image_size(tmp_path / "ok.jpg") == (183, 276)


def test_colour_map_voc_converts_rgb_masks(voc):
    root, ids = voc
    _rgb_mask(root, ids)
    assert run_check(root).exit_code == 1
    result = run_check(root, "--colour-map", "voc")
    assert result.exit_code == 0, result.output


def test_unknown_colour_named(voc):
    root, ids = voc
    p = root / "SegmentationClass" / f"{ids['train'][0]}.png"
    with Image.open(p) as im:
        rgb = colorize(np.array(im))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(p)
    result = run_check(root, "--colour-map", "voc")
    assert result.exit_code == 1 and "(1, 2, 3)" in result.output and p.name in result.output


def test_binary_flag_accepts_0_255(voc):
    root, ids = voc
    _zero_255(root, ids)
    result = run_check(root, "--binary")
    assert result.exit_code == 0, result.output


def test_selfies_flagged_as_one_summary_and_binary_fixes_it(shared_data):
    report = check_dataset(shared_data / "selfies")
    assert not report.ok and report.checked == 1491
    assert {p.kind for p in report.problems} == {"zero-255-mask"} and len(report.problems) == 1491
    text = format_report(report)
    assert len(text.splitlines()) < 20
    assert "zero-255-mask (1491)" in text and "selfie_0001.png" in text and "--binary" in text
    assert "1491 of 1491 masks are 0/255" in text
    fixed = check_dataset(shared_data / "selfies", binary=True)
    assert fixed.ok and fixed.usable == {"train": 1267, "trainval": 1491, "val": 224}
    assert set(fixed.class_pixels) == {0, 1}


def test_images_and_masks_folders(voc):
    root, ids = voc
    result = run_check("--images", root / "JPEGImages", "--masks", root / "SegmentationClass")
    assert result.exit_code == 0, result.output
    assert "all 6" in result.output
    (root / "SegmentationClass" / f"{ids['train'][0]}.png").unlink()
    result = run_check("--images", root / "JPEGImages", "--masks", root / "SegmentationClass")
    assert result.exit_code == 1 and f"{ids['train'][0]}.png" in result.output


@pytest.mark.parametrize("args, message", [
    (["/definitely/not/here"], "dataset folder not found"),
    ([], "give a DATASET folder"),
    (["--images", "/tmp"], "--images and --masks go together"),
    (["--binary", "--num-classes", "3", "."], "--binary maps 255"),
])
def test_usage_errors_exit_2(args, message):
    result = run_check(*args)
    assert result.exit_code == 2
    assert message in result.output and "error:" in result.output


def test_many_problems_are_capped(voc):
    root, ids = voc
    for i in range(30):
        shutil.copy(root / "SegmentationClass" / f"{ids['train'][0]}.png", root / f"SegmentationClass/orphan_{i:02d}.png")
    result = run_check(root)
    assert result.exit_code == 1
    assert "mask-without-image (30)" in result.output and "… and 10 more" in result.output


def test_subprocess_cli(voc):
    root, ids = voc
    _truncate_image(root, ids)
    exe = Path(sys.executable).parent / "mobile-seg"
    exe = exe if exe.exists() else Path(shutil.which("mobile-seg") or "mobile-seg")
    proc = subprocess.run([str(exe), "data", "check", str(root), "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{ids['train'][0]}.jpg" in proc.stdout and "undecodable-image" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["problem_count"] == 1
