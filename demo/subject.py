"""Main-subject control: which of the people in the mask stay sharp.

The probability map is thresholded and split into connected components (8-connected);
components smaller than `min_area` (a fraction of the frame) are dropped as specks, then
`mode` keeps every remaining person (``all``), the largest one (``largest``) or the one
whose centroid is nearest the frame centre (``center``; among components at least a
quarter the size of the largest, so a stray speck near the centre never wins). Dropped components are zeroed in
the probability map (with a 2-pixel margin, so their soft rim goes too); kept ones keep
their soft edges for the feathered alpha.
"""
from __future__ import annotations

import cv2
import numpy as np

from mobile_seg.errors import ConfigError

SUBJECT_MODES = ("all", "largest", "center")
DROP_MARGIN_PX = 2
CENTER_MIN_SHARE = 0.25  # `center` considers components at least this share of the largest


def check_subject(mode: str, threshold: float, min_area: float) -> None:
    """ConfigError for a mode, threshold or minimum area out of range."""
    if mode not in SUBJECT_MODES:
        raise ConfigError(f"unknown --subject {mode!r}; expected one of {', '.join(SUBJECT_MODES)}")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold must be in (0, 1), got {threshold}")
    if not 0.0 <= min_area < 1.0:
        raise ConfigError(f"--min-area must be in [0, 1) (a fraction of the frame), got {min_area}")


def kept_components(prob: np.ndarray, mode: str = "all", threshold: float = 0.5,
                    min_area: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(component labels [h, w] int32, boolean keep flag per label; label 0 = background)."""
    binary = (prob > threshold).view(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = np.zeros(n, bool)
    if n <= 1:
        return labels, keep
    areas = stats[1:, cv2.CC_STAT_AREA]
    candidates = np.flatnonzero(areas >= min_area * prob.size) + 1
    if len(candidates) == 0:
        return labels, keep
    if mode == "all":
        keep[candidates] = True
    elif mode == "largest":
        keep[candidates[np.argmax(areas[candidates - 1])]] = True
    else:  # a speck near the centre must not win over the person: only sizeable components compete
        sizeable = candidates[areas[candidates - 1] >= CENTER_MIN_SHARE * areas[candidates - 1].max()]
        h, w = prob.shape
        d = np.hypot(centroids[sizeable, 0] - (w - 1) / 2, centroids[sizeable, 1] - (h - 1) / 2)
        keep[sizeable[np.argmin(d)]] = True
    return labels, keep


def select_subject(prob: np.ndarray, mode: str = "all", threshold: float = 0.5,
                   min_area: float = 0.0) -> np.ndarray:
    """`prob` with the people that are not kept zeroed (a new array, or `prob` itself
    when nothing is dropped)."""
    if mode == "all" and min_area <= 0.0:
        return prob
    labels, keep = kept_components(prob, mode, threshold, min_area)
    drop = ~keep
    drop[0] = False
    if not drop.any():
        return prob
    dropped = drop.view(np.uint8)[labels]
    k = 2 * DROP_MARGIN_PX + 1
    dropped = cv2.dilate(dropped, np.ones((k, k), np.uint8))
    dropped[keep[labels]] = 0  # the margin never eats into a kept person
    out = prob.copy()
    out[dropped.view(bool)] = 0.0
    return out
