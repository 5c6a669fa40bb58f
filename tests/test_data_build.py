"""`data build`: counted split sizes, exact round trip, refusal, --skip-bad, atomic output."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from mobile_seg.cli import main
from conftest import copy_voc, make_class_voc
from mobile_seg.data import tfrecords
from mobile_seg.errors import DatasetProblems
from mobile_seg.data.pipeline import iterate_examples, read_descriptor
from mobile_seg.data.tfrecords import build_dataset




def line_counts(root: Path) -> dict[str, int]:
    return {p.stem: len(p.read_text().split()) for p in (root / "ImageSets/Segmentation").glob("*.txt")}


def raw_records(built: Path, split: str) -> list[tf.train.Example]:
    desc = read_descriptor(built)
    files = [str(built / s) for s in desc["splits"][split]["shards"]]
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def feature(ex: tf.train.Example, key: str):
    f = ex.features.feature[key]
    return f.bytes_list.value[0] if f.bytes_list.value else f.int64_list.value[0]


def build_cli(*args):
    result = CliRunner().invoke(main, ["data", "build", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="session")
def built_portraits(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "portraits"
    build_dataset(shared_data / "portraits", out)
    return out


@pytest.fixture
def voc(tmp_path, shared_data):
    root = tmp_path / "ds"
    return root, copy_voc(shared_data / "portraits", root, 6, 3)


def test_portraits_descriptor_counts_splits(shared_data, built_portraits):
    desc = read_descriptor(built_portraits)
    counts = line_counts(shared_data / "portraits")
    assert {s: v["num_examples"] for s, v in desc["splits"].items()} == counts
    assert desc["format"] == "mobile-seg-dataset/1" and desc["name"] == "portraits"
    assert desc["num_classes"] == 2 and desc["ignore_label"] == 255
    assert desc["class_names"] == ["background", "person"]
    assert desc["palette"] == [[0, 0, 0], [128, 0, 0]]
    assert Path(desc["source"]).is_absolute()
    # trainval lists exactly train + val: their shards are reused, not written twice
    assert desc["splits"]["trainval"]["shards"] == desc["splits"]["train"]["shards"] + desc["splits"]["val"]["shards"]
    for split, n in counts.items():
        assert len(raw_records(built_portraits, split)) == n


def test_coco_person_counts_via_cli(shared_data, tmp_path):
    out = tmp_path / "coco"
    result = build_cli(shared_data / "coco_person", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    counts = line_counts(shared_data / "coco_person")
    desc = json.loads(result.output.strip().splitlines()[-1])["descriptor"]
    assert {s: v["num_examples"] for s, v in desc["splits"].items()} == counts
    assert json.loads((out / "descriptor.json").read_text()) == desc
    assert re.search(r"^\s+train\s+85 examples", result.output, re.M)


def test_round_trip_exact_bytes_and_pixels(shared_data, built_portraits):
    src = shared_data / "portraits"
    records = raw_records(built_portraits, "val")
    assert len(records) == 44
    for ex in records:
        id_ = feature(ex, "image/filename").decode()
        assert feature(ex, "image/encoded") == (src / "JPEGImages" / f"{id_}.jpg").read_bytes()
        assert feature(ex, "image/format") == b"jpeg" and feature(ex, "mask/format") == b"png"
        mask = np.array(Image.open(src / "SegmentationClass" / f"{id_}.png"))
        assert (feature(ex, "image/height"), feature(ex, "image/width")) == mask.shape
        decoded = tf.io.decode_png(feature(ex, "mask/encoded"), channels=1).numpy()
        assert decoded.shape == mask.shape + (1,) and np.array_equal(decoded[..., 0], mask)
    seen = 0
    for id_, image, mask in iterate_examples(built_portraits, "train"):
        original = np.array(Image.open(src / "SegmentationClass" / f"{id_}.png"))
        assert image.dtype == np.uint8 and image.shape == original.shape + (3,)
        assert mask.dtype == np.uint8 and np.array_equal(mask, original)
        seen += 1
    assert seen == 246


def test_binary_maps_255_to_1(shared_data, tmp_path):
    root = tmp_path / "selfies"
    copy_voc(shared_data / "selfies", root, 4, 2)
    assert build_cli(root, "--out", tmp_path / "refused").exit_code == 2
    assert not (tmp_path / "refused").exists()
    result = build_cli(root, "--out", tmp_path / "out", "--binary")
    assert result.exit_code == 0, result.output
    for id_, _, mask in iterate_examples(tmp_path / "out", "train"):
        original = np.array(Image.open(root / "SegmentationClass" / f"{id_}.png"))
        assert np.array_equal(mask, original // 255)
    assert read_descriptor(tmp_path / "out")["binary"] is True


def test_refuses_dataset_with_problems(voc, tmp_path):
    root, ids = voc
    bad = root / "SegmentationClass" / f"{ids['train'][0]}.png"
    bad.unlink()
    result = build_cli(root, "--out", tmp_path / "out")
    assert result.exit_code == 2   # a refused command is a user error, like a bad flag
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "1 problem(s)" in lines[0] and "mobile-seg data check" in lines[0] and "--skip-bad" in lines[0]
    assert not (tmp_path / "out").exists()


def test_skip_bad_lists_and_leaves_out(voc, tmp_path):
    root, ids = voc
    truncated = root / "JPEGImages" / f"{ids['train'][0]}.jpg"
    truncated.write_bytes(truncated.read_bytes()[:500])
    label7 = root / "SegmentationClass" / f"{ids['val'][0]}.png"
    a = np.array(Image.open(label7))
    a[0, 0] = 7
    Image.fromarray(a).save(label7)
    result = build_cli(root, "--out", tmp_path / "out", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "skipped 2 bad pair(s)" in result.output
    assert truncated.name in result.output and label7.name in result.output
    desc = read_descriptor(tmp_path / "out")
    assert desc["splits"]["train"]["num_examples"] == 5 and desc["splits"]["val"]["num_examples"] == 2
    assert desc["skipped"] == sorted([ids["train"][0], ids["val"][0]])
    built_ids = {i for s in ("train", "val") for i, _, _ in iterate_examples(tmp_path / "out", s)}
    assert built_ids == set(ids["train"][1:] + ids["val"][1:])


def test_interrupted_build_leaves_nothing(voc, tmp_path, monkeypatch):
    root, _ = voc
    calls = []
    real = tfrecords.encode_example

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through a shard
        return real(*args, **kwargs)

    monkeypatch.setattr(tfrecords, "encode_example", flaky)
    parent = tmp_path / "builds"
    parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        build_dataset(root, parent / "out", workers=1)
    assert list(parent.iterdir()) == []  # neither the output nor its temp folder


def test_interrupted_rebuild_keeps_previous(voc, tmp_path, monkeypatch):
    root, _ = voc
    out = tmp_path / "out"
    build_dataset(root, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tfrecords, "encode_example", boom)
    with pytest.raises(RuntimeError):
        build_dataset(root, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "out"]


def test_refuses_to_replace_foreign_folder(voc, tmp_path):
    root, _ = voc
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    result = build_cli(root, "--out", precious)
    assert result.exit_code == 2 and "not a built dataset" in result.output
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_explicit_shards(voc, tmp_path):
    root, _ = voc
    result = build_dataset(root, tmp_path / "out", shards=4)
    train = result.descriptor["splits"]["train"]
    assert train["shards"] == [f"train-{k:05d}-of-00004.tfrecord" for k in range(4)]
    assert result.descriptor["splits"]["val"]["shards"] == [f"val-{k:05d}-of-00003.tfrecord" for k in range(3)]
    assert len(raw_records(tmp_path / "out", "train")) == 6
    with pytest.raises(Exception, match="--shards"):
        build_dataset(root, tmp_path / "out2", shards="zero")


def test_refusal_is_a_dataset_problems_error(voc, tmp_path):
    root, ids = voc
    (root / "ImageSets/Segmentation/val.txt").write_text("")
    with pytest.raises(DatasetProblems) as err:
        build_dataset(root, tmp_path / "out")
    assert err.value.exit_code == 2
    result = build_dataset(root, tmp_path / "out", skip_bad=True)
    assert list(result.descriptor["splits"]) == ["train"]
    assert [p.kind for p in result.skipped] == ["empty-split"]


def test_built_classes_come_from_the_dataset(tmp_path):
    root = make_class_voc(tmp_path / "three")
    result = build_cli(root, "--out", tmp_path / "masks", "--json")
    assert result.exit_code == 0, result.output
    desc = read_descriptor(tmp_path / "masks")
    assert desc["num_classes"] == 3 and desc["class_names"] == ["background", "class_1", "class_2"]
    assert desc["palette"] == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert "classes    3 (from the masks): background, class_1, class_2" in result.output
    assert {int(v) for _, _, m in iterate_examples(tmp_path / "masks", "train") for v in np.unique(m)} == {0, 1, 2, 255}

    (root / "labels.txt").write_text("background\ncat\ndog\n")
    assert build_cli(root, "--out", tmp_path / "file").exit_code == 0
    assert read_descriptor(tmp_path / "file")["class_names"] == ["background", "cat", "dog"]
    assert build_cli(root, "--out", tmp_path / "flag", "--class-names", "bg,road,car").exit_code == 0
    assert read_descriptor(tmp_path / "flag")["class_names"] == ["bg", "road", "car"]

    result = build_cli(root, "--out", tmp_path / "bad", "--num-classes", "2")
    assert result.exit_code == 2 and not (tmp_path / "bad").exists()
    assert result.output.strip() == (f"error: {root / 'labels.txt'}: lists 3 class names but --num-classes "
                                     "is 2: fix the file, or pass --class-names")
