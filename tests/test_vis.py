"""`mobile-seg vis`: palette PNG masks, overlays, side-by-sides with and without truth."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mobile_seg.cli import main
from mobile_seg.config import ModelConfig
from train_helpers import TINY_MODEL, untrained_run



@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory):
    """3 portraits images; ground-truth masks for the first two only."""
    tmp = tmp_path_factory.mktemp("vis")
    src = shared_data / "portraits"
    ids = (src / "ImageSets/Segmentation/val.txt").read_text().split()[:3]
    (tmp / "images").mkdir()
    (tmp / "masks").mkdir()
    for i in ids:
        shutil.copy(src / "JPEGImages" / f"{i}.jpg", tmp / "images")
    for i in ids[:2]:
        shutil.copy(src / "SegmentationClass" / f"{i}.png", tmp / "masks")
    return tmp / "images", tmp / "masks", ids


def _vis(*args):
    return CliRunner().invoke(main, ["vis", "--quiet", *map(str, args)])


def test_tflite_vis_writes_palette_masks_overlays_and_side_by_sides(images, shared_data, tmp_path):
    image_dir, mask_dir, ids = images
    out = tmp_path / "out"
    result = _vis("--tflite", shared_data / "models" / "selfie_segmentation.tflite", "--images", image_dir,
                  "--masks", mask_dir, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout.strip().splitlines()[-1])
    assert d["images"] == 3 and d["with_truth"] == 2 and d["files"] == 9
    for i in ids:
        image = Image.open(image_dir / f"{i}.jpg")
        w, h = image.size
        with Image.open(out / f"{i}.png") as mask:
            assert mask.mode == "P" and mask.size == (w, h)     # palette PNG: visible in any viewer
            values = np.unique(np.asarray(mask))
            assert set(values) <= {0, 1} and 1 in values           # still the class indices
            assert mask.getpalette()[3:6] == [128, 0, 0]           # person has a colour, not 1/255 grey
        assert Image.open(out / f"{i}_overlay.jpg").size == (w, h)
        panels = 3 if (mask_dir / f"{i}.png").exists() else 2
        assert Image.open(out / f"{i}_side.jpg").size == (panels * w + (panels - 1) * 4, h)


def test_run_vis_and_errors(images, shared_data, tmp_path):
    image_dir, _, _ = images
    untrained_run(tmp_path / "run", ModelConfig(**TINY_MODEL))
    result = _vis("--run", tmp_path / "run", "--images", image_dir, "--out", tmp_path / "out", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").iterdir())) == 3

    result = _vis("--run", tmp_path / "run", "--images", tmp_path / "nothing", "--out", tmp_path / "o2")
    assert result.exit_code == 2 and result.stderr.strip().endswith("nothing: images folder not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _vis("--run", tmp_path / "run", "--images", empty, "--out", tmp_path / "o3")
    assert result.exit_code == 2 and "no images" in result.stderr
