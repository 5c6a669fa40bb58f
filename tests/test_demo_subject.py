"""Main-subject control: connected components of the mask, --subject all|largest|center,
--threshold and --min-area, on synthetic maps and on a real two-person photo."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from demo.app import load_model, resolve_model_path
from demo.pipeline import Pipeline, Settings
from demo.subject import kept_components, select_subject
from mobile_seg.cli import main

TWO_PEOPLE = "voc07_000752"  # scenes_unlabeled: a man at the left edge, a woman lying right of centre


def blob(prob: np.ndarray, cx: int, cy: int, r: int, value: float = 0.95) -> None:
    """A disc of `value` with a soft rim (0.4 over 3 px) added into `prob`."""
    cv2.circle(prob, (cx, cy), r + 3, 0.4, -1)
    cv2.circle(prob, (cx, cy), r, value, -1)


@pytest.fixture
def three_people() -> np.ndarray:
    """96×128 map: a big person at the left, a smaller one at the centre, a speck."""
    prob = np.zeros((96, 128), np.float32)
    blob(prob, 24, 48, 18)  # area ~1000 px
    blob(prob, 66, 50, 10)  # ~310 px, nearest the centre (63.5, 47.5)
    prob[5:7, 120:122] = 0.9  # 4 px speck
    return prob


def people(prob: np.ndarray) -> int:
    n, _ = cv2.connectedComponents((prob > 0.5).astype(np.uint8))
    return n - 1


def test_all_keeps_everyone_and_min_area_drops_specks(three_people):
    assert select_subject(three_people, "all") is three_people  # nothing to do: no copy
    assert people(select_subject(three_people, "all", min_area=0.001)) == 2  # 0.001 × 12288 px = 12 px
    assert people(select_subject(three_people, "all", min_area=0.05)) == 1  # only the big one (> 614 px)


def test_largest_and_center_keep_one_person_with_its_soft_rim(three_people):
    largest = select_subject(three_people, "largest")
    center = select_subject(three_people, "center")
    assert people(largest) == people(center) == 1
    assert largest[48, 24] == pytest.approx(0.95) and largest[50, 66] == 0.0
    assert center[50, 66] == pytest.approx(0.95) and center[48, 24] == 0.0
    # The kept person's soft rim (0.4) stays for the feathered alpha; the dropped one's goes too.
    assert largest[48, 24 + 20] == pytest.approx(0.4) and largest[50, 66 + 12] == 0.0
    assert largest[5, 120] == 0.0  # the speck


def test_center_ignores_a_speck_at_the_centre():
    prob = np.zeros((96, 128), np.float32)
    blob(prob, 100, 48, 14)
    prob[47:49, 63:65] = 0.9  # 4 px exactly at the centre
    kept = select_subject(prob, "center")
    assert kept[48, 100] == pytest.approx(0.95) and kept[48, 64] == 0.0


def test_threshold_decides_what_is_a_person():
    prob = np.zeros((64, 64), np.float32)
    blob(prob, 16, 32, 8, value=0.6)
    blob(prob, 48, 32, 6, value=0.9)
    labels, keep = kept_components(prob, "all", threshold=0.5)
    assert keep.sum() == 2
    labels, keep = kept_components(prob, "all", threshold=0.7)
    assert keep.sum() == 1 and keep[labels[32, 48]]


@pytest.fixture(scope="module")
def two_people(shared_data):
    root = shared_data / "scenes_unlabeled"
    image = cv2.imread(str(root / "JPEGImages" / f"{TWO_PEOPLE}.jpg"))
    boxes = json.loads((root / "boxes.json").read_text())[TWO_PEOPLE]
    model = load_model(resolve_model_path(None))  # the shipped model (MediaPipe's misses the man)
    return image, [[round(v) for v in b] for b in boxes], model


def person_pixels(alpha: np.ndarray, box) -> int:
    x0, y0, x1, y1 = box
    return int(np.count_nonzero(alpha[y0:y1, x0:x1] > 0.5))


@pytest.mark.parametrize("mode", ["all", "largest", "center"])
def test_subject_modes_on_a_real_photo_of_two_people(two_people, mode):
    """The woman (right box, nearer the centre) and the man (left edge): "center" keeps her,
    "largest" whoever has more person pixels in the full mask (the shipped model marks the
    man whole and only part of the woman's white clothes), "all" both."""
    image, (woman, man), model = two_people
    alpha, _, _ = Pipeline(model, Settings(subject=mode, smoothing=0.0)).alpha(image)
    everyone, _, _ = Pipeline(model, Settings(smoothing=0.0)).alpha(image)
    assert person_pixels(everyone, man) > 4000 and person_pixels(everyone, woman) > 4000  # (10197, 6049)
    if mode == "all":
        assert [person_pixels(alpha, b) for b in (woman, man)] == [person_pixels(everyone, b) for b in (woman, man)]
        return
    kept, dropped = (woman, man)
    if mode == "largest" and person_pixels(everyone, man) > person_pixels(everyone, woman):
        kept, dropped = man, woman
    assert person_pixels(alpha, kept) > 0.95 * person_pixels(everyone, kept)
    assert person_pixels(alpha, dropped) < 0.02 * person_pixels(everyone, dropped)


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "--threshold must be in (0, 1)"),
    (["--min-area", "-0.1"], "--min-area must be in [0, 1)"),
    (["--subject", "biggest"], "Invalid value for '--subject'"),
])
def test_subject_flag_errors(shared_data, tmp_path, args, message):
    res = CliRunner().invoke(main, ["demo", "--image", str(shared_data / "portraits" / "JPEGImages" /
                                                          "portrait_142.jpg"),
                                    "--output", str(tmp_path / "o.png"), *args])
    assert res.exit_code == 2 and message in res.output + (res.stderr or ""), res.output
    assert not (tmp_path / "o.png").exists()
