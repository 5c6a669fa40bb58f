"""`data check`: passes on the real shared datasets, names the file and problem on broken copies."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mobile_seg.cli import main
from conftest import copy_voc, make_class_voc
from mobile_seg.data.check import BadFile, check_dataset, format_report, image_size
from mobile_seg.data.classes import infer_num_classes, read_labelmap, read_labels_txt
from mobile_seg.data.palette import colorize, save_index_png

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


# --- classes: names from --class-names or a names file, count from names, map or masks ---

CVAT_LABELMAP = """# label:color_rgb:parts:actions
background:0,0,0::
road:128,64,128::

car:0,0,142:wheel,door:open
"""


def last_json(result) -> dict:
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.fixture
def three(tmp_path) -> Path:
    """4 pairs of 32×32, masks holding 0, 1, 2 and 255; no names file."""
    return make_class_voc(tmp_path / "three")


def test_three_classes_inferred_from_the_masks(three):
    result = run_check(three, "--json")
    assert result.exit_code == 0, result.output
    report = last_json(result)
    assert report["num_classes"] == 3 and report["classes_from"] == "the masks"
    assert report["class_names"] == ["background", "class_1", "class_2"]
    assert set(report["class_pixels"]) == {"0", "1", "2", "255"}
    assert "classes:      3 (from the masks): background, class_1, class_2" in result.output
    assert re.search(r"class pixels: 0 background [\d.]+%, 1 class_1 [\d.]+%, 2 class_2 [\d.]+%, 255 ignore",
                     result.output)


def test_labels_txt_names_the_classes(three):
    (three / "labels.txt").write_text("background\ncat\n\n  dog  \n")
    result = run_check(three, "--json")
    assert result.exit_code == 0, result.output
    report = last_json(result)
    assert report["class_names"] == ["background", "cat", "dog"] and report["num_classes"] == 3
    assert report["classes_from"] == "labels.txt"
    assert "classes:      3 (from labels.txt): background, cat, dog\n" in result.output
    assert ", 1 cat " in result.output and ", 2 dog " in result.output
    # --num-classes that agrees keeps the file's names
    assert last_json(run_check(three, "--num-classes", "3", "--json"))["class_names"][1] == "cat"


def test_labelmap_txt_names_the_classes(three):
    (three / "labelmap.txt").write_text(CVAT_LABELMAP)
    report = last_json(run_check(three, "--json"))
    assert report["class_names"] == ["background", "road", "car"] and report["classes_from"] == "labelmap.txt"
    assert read_labelmap(three / "labelmap.txt") == ["background", "road", "car"]


def test_class_names_flag_overrides_the_file_and_sets_the_count(three):
    (three / "labels.txt").write_text("background\ncat\ndog\n")
    report = last_json(run_check(three, "--class-names", "bg, a ,b", "--json"))
    assert report["class_names"] == ["bg", "a", "b"] and report["classes_from"] == "--class-names"
    result = run_check(three, "--class-names", "bg,a,b,c", "--json")
    assert result.exit_code == 0 and last_json(result)["num_classes"] == 4
    assert "no pixels:    3 c" in result.output          # a named class no mask holds
    result = run_check(three, "--class-names", "bg,a", "--json")   # fewer names than the masks hold
    assert result.exit_code == 1 and "label values 2 outside 0..1" in result.output
    assert last_json(result)["problem_kinds"] == {"bad-label": 4}


def test_num_classes_given_keeps_default_names(three):
    report = last_json(run_check(three, "--num-classes", "5", "--json"))
    assert report["num_classes"] == 5 and report["classes_from"] == "--num-classes"
    assert report["class_names"] == ["background", "class_1", "class_2", "class_3", "class_4"]


@pytest.mark.parametrize("args, files, message", [
    (["--num-classes", "2", "--class-names", "a,b,c"], {}, "--class-names lists 3 names but --num-classes is 2"),
    (["--num-classes", "4"], {"labels.txt": "a\nb\nc\n"}, "labels.txt: lists 3 class names but --num-classes is 4"),
    ([], {"labels.txt": "a\nb\n\na\n"}, "labels.txt: class name 'a' is listed twice (line 1 and line 4)"),
    ([], {"labels.txt": "\n \n"}, "labels.txt: lists no class names"),
    ([], {"labels.txt": "background:0,0,0::\n"}, "labels.txt: line 1 'background:0,0,0::' is a labelmap line"),
    ([], {"labelmap.txt": "background:0,0,0::\ncat:1,2::\n"}, "labelmap.txt: line 2: colour '1,2' of 'cat' is not r,g,b"),
    ([], {"labelmap.txt": "# x\nbackground\n"}, "labelmap.txt: line 2 'background' is not name:r,g,b::"),
    ([], {"labels.txt": "a\nb\nc\n", "labelmap.txt": CVAT_LABELMAP}, "labels.txt and labelmap.txt list different"),
    (["--class-names", "a,,b"], {}, "--class-names: name 2 is empty"),
    (["--binary"], {"labels.txt": "a\nb\nc\n"}, "--binary maps 255 → 1 for 2 classes; got 3 class names from labels.txt"),
])
def test_class_name_errors_are_one_line(three, args, files, message):
    for name, text in files.items():
        (three / name).write_text(text)
    result = run_check(three, *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()] and result.output.startswith("error: ")
    assert message in result.output, result.output


def test_names_file_readers(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeff__ignore__\n_background_\nperson\r\n\nsky blue\n".encode())
    assert read_labels_txt(labels) == ["_background_", "person", "sky blue"]  # labelme: __ignore__ = 255
    labelmap = tmp_path / "labelmap.txt"
    labelmap.write_text("background:::\nperson:192,128,128\n")
    assert read_labelmap(labelmap) == ["background", "person"]


def test_inference_rule():
    assert infer_num_classes([0, 1, 2, 255], 255) == 3
    assert infer_num_classes([0, 255], 255) == 2 and infer_num_classes([], 255) == 2
    assert infer_num_classes([0, 1, 7], 255) == 2           # 7 past a gap: a stray label
    assert infer_num_classes([0, 1, 2, 3], 2) == 2           # never past the ignore label


def test_colour_map_gives_the_count(three, tmp_path):
    mapping = {"0": [0, 0, 0], "1": [255, 0, 0], "2": [0, 255, 0], "255": [255, 255, 255]}
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    palette = np.array([mapping.get(str(i), [9, 9, 9]) for i in range(256)], np.uint8)
    for p in (three / "SegmentationClass").iterdir():
        Image.fromarray(colorize(np.array(Image.open(p)), palette)).save(p)
    report = last_json(run_check(three, "--colour-map", tmp_path / "map.json", "--json"))
    assert report["ok"] and report["num_classes"] == 3
    assert report["classes_from"] == f"--colour-map {tmp_path / 'map.json'}"


def test_soft_and_stray_labels_do_not_make_classes(three):
    masks = sorted((three / "SegmentationClass").iterdir())
    save_index_png(np.arange(32 * 32).reshape(32, 32) % 200, masks[0])   # anti-aliased-looking ramp
    stray = np.array(Image.open(masks[1]))
    stray[5, 5] = 9
    save_index_png(stray, masks[1])
    report = check_dataset(three)
    assert report.num_classes == 3 and report.classes_from == "the masks"
    problems = {Path(p.file).name: p.message for p in report.problems}
    assert set(problems) == {masks[0].name, masks[1].name}
    assert "looks like a soft (anti-aliased) mask" in problems[masks[0].name]
    assert problems[masks[1].name].startswith("label values 9 outside 0..2")
    assert "no mask holds class 3" in problems[masks[1].name] and "--class-names" in problems[masks[1].name]
