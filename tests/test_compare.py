"""`mobile-seg compare`: per-image and dataset-level person IoU, paired bootstrap CIs,
flicker on frame-ordered splits, one bench run, CSV and JSON."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mobile_seg.compare import (SplitSpec, compare, paired_difference, parse_split, person_counts,
                                sequence_of)
from train_helpers import build, cli, error_lines, voc_subset


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory):
    """4 frames of each DAVIS val sequence (frame order kept) and 3 portraits, built."""
    tmp = tmp_path_factory.mktemp("cmp")
    val = (shared_data / "davis16_person/ImageSets/Segmentation/val.txt").read_text().split()
    ids = [i for i in val if i.startswith("hockey")][:4] + [i for i in val if i.startswith("lucia")][:4]
    davis = build(voc_subset(shared_data / "davis16_person", tmp / "davis16_person", {"val": ids}), tmp / "davis")
    portraits = build(voc_subset(shared_data / "portraits", tmp / "portraits", {"val": 3}), tmp / "built_portraits")
    return davis, portraits, ids


def test_images_without_a_person_are_scored_apart(shared_data, tmp_path):
    """coco_person val starts with one image with people and three without: the mean
    per-image IoU is that one image's IoU, the three count as false alarms or not."""
    coco = build(voc_subset(shared_data / "coco_person", tmp_path / "coco_person", {"val": 4}), tmp_path / "b")
    res = compare([shared_data / "models/selfie_segmentation.tflite", "default"], [SplitSpec(coco)],
                  bench=False, progress=False)
    for i, name in enumerate(res.names):
        sc = res.scores[i, "coco_person/val"]
        assert len(sc.ious) == 4 and np.isnan(sc.ious[1:]).all() and np.isfinite(sc.ious[0])
        assert sc.mean_iou == sc.ious[0] and len(sc.empty_alarms) == 3
        rows = [r for r in res.rows if r["model"] == name]
        assert sc.empty_false_alarm == np.mean([r["fp"] > 0 for r in rows[1:]])
    d = res.to_dict()["splits"]["coco_person/val"]["models"]["default.tflite"]
    assert d["empty_images"] == 3 and d["paired_diff"]["images"] == 1
    assert "alarms on empty images" in res.format()


def test_counts_differences_and_sequences():
    truth = np.array([[1, 1, 0, 255], [0, 1, 0, 1]], np.uint8)
    pred = np.array([[1, 0, 1, 1], [0, 1, 0, 0]], np.uint8)
    assert person_counts(pred, truth) == (2, 1, 2)  # the 255 pixel is left out
    mean, low, high, n = paired_difference([0.5, 0.6, np.nan, 0.2], [0.7, 0.6, 0.4, 0.2])
    assert n == 3 and mean == pytest.approx(0.2 / 3) and low <= mean <= high and low >= 0.0
    assert paired_difference([0.3, 0.4], [0.3, 0.4])[:3] == (0.0, 0.0, 0.0)
    assert sequence_of("lucia_00012") == "lucia" and sequence_of("one-by-one_000198") == "one-by-one"
    assert parse_split("built/davis:all") == SplitSpec(__import__("pathlib").Path("built/davis"), "all")


def test_compare_scores_flicker_and_bench(shared_data, clips):
    from mobile_seg.evaluate import load_predictor, predict_mask
    from mobile_seg.data.pipeline import iterate_examples
    davis, portraits, ids = clips
    mp = shared_data / "models/selfie_segmentation.tflite"
    res = compare([mp, "default", mp], [SplitSpec(davis, "val", video=True), SplitSpec(portraits)],
                  runs=3, progress=False)
    assert res.names == ["selfie_segmentation.tflite", "default.tflite", "selfie_segmentation.tflite#2"]
    d = res.to_dict()
    split = d["splits"]["davis16_person/val"]
    assert split["images"] == 8 and split["video"]
    # the same model twice: no difference, a zero-width interval
    same = split["models"]["selfie_segmentation.tflite#2"]["paired_diff"]
    assert same["mean"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["images"] == 8
    # flicker by hand: consecutive frames of one sequence, never across hockey -> lucia
    model = load_predictor(tflite=mp, num_threads=1)
    masks = [(predict_mask(model, im) == 1, m == 1) for _, im, m in iterate_examples(davis, "val")]
    pairs = [(a, b) for k, (a, b) in enumerate(zip(masks, masks[1:])) if k != 3]
    assert len(pairs) == 6
    want = np.mean([np.mean(a[0] != b[0]) for a, b in pairs])
    truth = np.mean([np.mean(a[1] != b[1]) for a, b in pairs])
    assert split["models"]["selfie_segmentation.tflite"]["flicker"] == pytest.approx(want, abs=1e-5)
    assert split["truth_flicker"] == pytest.approx(truth, abs=1e-4)
    # dataset-level IoU from the summed counts of the per-image rows
    rows = [r for r in res.rows if r["model"] == "default.tflite" and r["split"] == "davis16_person/val"]
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    assert split["models"]["default.tflite"]["person_iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-4)
    assert "flicker" not in res.format().split("portraits/val")[1].split("latency")[0]
    lat = d["latency"]
    assert lat["selfie_segmentation.tflite"]["ratio"] == 1.0 and lat["default.tflite"]["median_ms"] > 0


def test_by_size_groups_the_person_images_by_their_share_of_the_frame(shared_data, clips):
    """Every image with a person lands in exactly one group, by truth pixels / scored pixels
    (checked against the masks themselves); each group's mean and paired difference are
    those of its images."""
    from mobile_seg.data.pipeline import iterate_examples
    davis, portraits, _ = clips
    mp = shared_data / "models/selfie_segmentation.tflite"
    res = compare([mp, "default", mp], [SplitSpec(davis, "val"), SplitSpec(portraits)], bench=False,
                  progress=False)
    for split, data in (("davis16_person/val", davis), ("portraits/val", portraits)):
        rows = {name: [r for r in res.rows if r["split"] == split and r["model"] == name] for name in res.names}
        share = np.array([r["truth_pixels"] / r["scored_pixels"] for r in rows[res.names[0]]])
        truth = [m for _, _, m in iterate_examples(data, "val")]
        by_hand = np.array([np.count_nonzero(m == 1) / np.count_nonzero(m != 255) for m in truth])
        assert np.allclose(share, by_hand) and np.allclose(res.person_shares(split), by_hand)
        assert (share > 0).all()
        groups = res.by_size(split)
        assert sum(g["images"] for g in groups) == len(share)
        for g in groups:
            low, high = {"small": (0, 0.05), "medium": (0.05, 0.2), "large": (0.2, 1.01)}[g["group"]]
            pick = (share >= low) & (share < high)
            assert g["images"] == pick.sum() > 0
            ious = {n: np.array([r["iou"] for r in rows[n]])[pick] for n in res.names}
            for n in res.names:
                assert g["models"][n]["mean_image_iou"] == pytest.approx(ious[n].mean(), abs=1e-4)
            mean, low_ci, high_ci, n_img = g["models"]["default.tflite"]["paired_diff"]
            want = (ious["default.tflite"] - ious[res.names[0]]).mean()
            assert n_img == pick.sum() and mean == pytest.approx(want, abs=1e-3) and low_ci <= mean <= high_ci
            assert g["models"][res.names[2]]["paired_diff"][:3] == (0.0, 0.0, 0.0)
            assert g["models"][res.names[0]]["paired_diff"] is None
    # the first three portraits val images: one medium, two close-ups
    assert [(g["group"], g["images"]) for g in res.by_size("portraits/val")] == [("medium", 1), ("large", 2)]
    table = res.format(by_size=True)
    assert "portraits/val by the person's share of the frame" in table and "large ≥ 20 % (2)" in table
    assert "share of the frame" not in res.format()


def test_cli_compare_csv_json_and_errors(shared_data, clips, tmp_path):
    davis, portraits, ids = clips
    mp = shared_data / "models/selfie_segmentation.tflite"
    res = cli("compare", mp, "default", "--data", portraits, "--video", f"{davis}:val", "--no-bench",
              "--csv", tmp_path / "rows.csv", "--by-size", "--quiet", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out["splits"]) == {"portraits/val", "davis16_person/val"} and "latency" not in out
    groups = out["splits"]["portraits/val"]["by_person_share"]
    assert [(g["group"], g["share"], g["images"]) for g in groups] == [("medium", "5–20 %", 1), ("large", "≥ 20 %", 2)]
    assert set(groups[1]["models"]["default.tflite"]["paired_diff"]) == {"mean", "ci95"}
    assert "davis16_person/val by the person's share of the frame" in res.stdout
    assert "paired diff [95% CI]" in res.stdout
    rows = list(csv.DictReader(open(tmp_path / "rows.csv")))
    assert len(rows) == 2 * (3 + 8) and {r["model"] for r in rows} == {"selfie_segmentation.tflite", "default.tflite"}
    assert all(0 < int(r["truth_pixels"]) <= int(r["scored_pixels"]) for r in rows)
    from click.testing import CliRunner
    from mobile_seg.cli import main
    bad = CliRunner().invoke(main, ["compare", str(mp), "--data", f"{portraits}:nope", "--no-bench",
                                    "--csv", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and len(error_lines(bad.stderr)) == 1
    assert "no split 'nope'" in error_lines(bad.stderr)[0] and not (tmp_path / "x.csv").exists()
    bad = CliRunner().invoke(main, ["compare", "no_such_model", "--data", str(portraits)])
    assert bad.exit_code == 2 and "no_such_model: neither a file nor a shipped model" in error_lines(bad.stderr)[0]
