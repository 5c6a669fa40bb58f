"""VOC colour map, palette PNGs, colourised masks, overlays, colour maps for RGB masks."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mobile_seg.data.palette import (VOC_PALETTE, colorize, default_class_names, load_colour_map,
                                     overlay, save_index_png, voc_colormap)
from mobile_seg.errors import ConfigError


def test_voc_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[2].tolist() == [0, 128, 0]
    assert cmap[15].tolist() == [192, 128, 128]   # person
    assert cmap[20].tolist() == [0, 64, 128]      # tvmonitor
    assert cmap[255].tolist() == [224, 224, 192]  # void / ignore
    assert len({tuple(c) for c in cmap.tolist()}) == 256


def test_save_index_png_keeps_indices_and_palette(tmp_path):
    mask = np.array([[0, 1, 1], [255, 0, 15]], dtype=np.uint8)
    path = tmp_path / "sub" / "mask.png"
    save_index_png(mask, path)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert np.array_equal(np.array(im), mask)
        assert im.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]  # no temp file left


def test_save_index_png_rejects_non_mask(tmp_path):
    with pytest.raises(ValueError):
        save_index_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_colorize_and_custom_palette():
    mask = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 0].tolist() == [224, 224, 192]
    assert colorize(mask, palette=[[0, 0, 0], [0, 255, 0]])[0, 1].tolist() == [0, 255, 0]


def test_overlay_blends_classes_and_marks_ignore():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1, 255], [0, 1, 0]], dtype=np.uint8)
    out = overlay(image, mask, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (out[mask == 0] == 100).all()                      # background left as image
    assert out[0, 1].tolist() == [114, 50, 50]                # (100 + (128, 0, 0)) / 2
    assert out[0, 2].tolist() == [162, 162, 146]              # ignore: towards VOC void colour
    assert out[0, 2].tolist() != out[0, 1].tolist()
    with pytest.raises(ValueError):
        overlay(image, mask[:1])


def test_load_colour_map_voc_and_json(tmp_path):
    voc = load_colour_map("voc")
    assert voc[(128, 0, 0)] == 1 and voc[(192, 128, 128)] == 15 and voc[(224, 224, 192)] == 255
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([[0, 0, 0], [255, 255, 255]]))
    assert load_colour_map(listed) == {(0, 0, 0): 0, (255, 255, 255): 1}
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"0": [0, 0, 0], "1": [0, 255, 0], "255": [9, 9, 9]}))
    assert load_colour_map(keyed) == {(0, 0, 0): 0, (0, 255, 0): 1, (9, 9, 9): 255}


@pytest.mark.parametrize("content", ["not json", '{"0": [1, 2]}', '"voc"', '{"x": [0, 0, 0]}'])
def test_load_colour_map_rejects_bad_files(tmp_path, content):
    path = tmp_path / "cmap.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="cmap.json"):
        load_colour_map(path)


def test_missing_colour_map_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_colour_map(tmp_path / "nope.json")


def test_default_class_names():
    assert default_class_names(2) == ["background", "person"]
    assert default_class_names(21)[15] == "person"
    assert default_class_names(3) == ["background", "class_1", "class_2"]
    assert VOC_PALETTE[:2].tolist() == [[0, 0, 0], [128, 0, 0]]
