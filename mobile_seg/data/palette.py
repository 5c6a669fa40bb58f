"""The PASCAL VOC colour map, palette PNGs of index masks, colourised masks and overlays."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from mobile_seg.errors import ConfigError
from mobile_seg.io_utils import atomic_path

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard VOC colour map: uint8 [n, 3], bits of the index interleaved into R, G, B.

    Index 0 is black, 1 = (128, 0, 0), 15 (person) = (192, 128, 128), 255 (the ignore
    label) = (224, 224, 192).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


VOC_PALETTE = voc_colormap()


def default_class_names(num_classes: int) -> list[str]:
    """background/person for 2 classes, the VOC names for 21, else class_<i>."""
    if num_classes == 2:
        return ["background", "person"]
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return ["background"] + [f"class_{i}" for i in range(1, num_classes)]


def save_index_png(mask: np.ndarray, path: str | os.PathLike, palette: np.ndarray | None = None) -> None:
    """Write a uint8 HxW class-index mask as a palette ('P' mode) PNG, atomically.

    Pixel values stay the class indices; the palette (VOC by default) only colours them.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(f"expected an HxW mask of indices 0..255, got shape {mask.shape}")
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    image.putpalette(_palette(palette).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def colorize(mask: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 HxWx3 image of a class-index mask (ignore 255 → VOC's cream void colour)."""
    return _palette(palette)[np.asarray(mask).astype(np.intp)]


def overlay(image_rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
            palette: np.ndarray | None = None) -> np.ndarray:
    """Image with every non-background pixel blended towards its class colour.

    Background (0) is left as the image; the ignore label is blended with the palette's
    colour 255 (VOC void: light cream), so it stays distinguishable from every class.
    """
    image = np.asarray(image_rgb)
    mask = np.asarray(mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    colours = colorize(mask, palette).astype(np.float32)
    out = image.astype(np.float32)
    fg = mask != 0
    out[fg] = (1.0 - alpha) * out[fg] + alpha * colours[fg]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_colour_map(spec: str | os.PathLike) -> dict[tuple[int, int, int], int]:
    """Colour → class index, from "voc" (the VOC colour map) or a JSON file.

    The JSON is either a list of [r, g, b] (position = class index) or an object
    {"<index>": [r, g, b], ...}, e.g. {"0": [0, 0, 0], "1": [255, 255, 255]}.
    """
    if str(spec).lower() == "voc":
        return {tuple(int(v) for v in c): i for i, c in enumerate(VOC_PALETTE)}
    path = Path(spec)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("colour map not found (expected 'voc' or a JSON file)", path) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"colour map is not valid JSON ({e})", path) from None
    items = enumerate(raw) if isinstance(raw, list) else raw.items() if isinstance(raw, dict) else None
    if items is None:
        raise ConfigError("colour map must be a list of [r,g,b] or an object index→[r,g,b]", path)
    mapping: dict[tuple[int, int, int], int] = {}
    for index, colour in items:
        try:
            index = int(index)
            colour = tuple(int(v) for v in colour)
        except (TypeError, ValueError):
            raise ConfigError(f"colour map entry {index!r}: {colour!r} is not index→[r,g,b]", path) from None
        if len(colour) != 3 or not 0 <= index <= 255 or not all(0 <= v <= 255 for v in colour):
            raise ConfigError(f"colour map entry {index}: {list(colour)} is not index 0..255 → [r,g,b]", path)
        mapping[colour] = index
    return mapping


def _palette(palette: np.ndarray | None) -> np.ndarray:
    if palette is None:
        return VOC_PALETTE
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    full = VOC_PALETTE.copy()
    full[: len(palette)] = palette[:256]
    return full
