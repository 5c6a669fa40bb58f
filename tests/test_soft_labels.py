"""Teacher labels (`mobile-seg label`), soft labels through data build and the pipeline,
the soft-label loss in training, and several --data mixed by weight."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ConfigError
from train_helpers import build, error_lines, voc_subset

SIZE = 64


def synthetic_voc(dst, label: int, n: int, seed: int, soft: bool = False):
    """n random-noise images whose masks are all `label` (train split; val = first image).
    With `soft`, a soft label whose left half is 1 and right half 0 (mask unchanged)."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "SegmentationSoft"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img{i}" for i in range(n)]
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(dst / "JPEGImages" / f"{i}.jpg")
        Image.fromarray(np.full((48, 80), label, np.uint8)).save(dst / "SegmentationClass" / f"{i}.png")
        if soft:
            s = np.zeros((48, 80), np.uint8)
            s[:, :40] = 255
            Image.fromarray(s).save(dst / "SegmentationSoft" / f"{i}.png")
    (dst / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (dst / "ImageSets/Segmentation/val.txt").write_text(ids[0] + "\n")
    return dst


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """A built dataset whose masks are all person (6 images) and one all background (2)."""
    tmp = tmp_path_factory.mktemp("two")
    person = build(synthetic_voc(tmp / "p_voc", 1, 6, 0), tmp / "person")
    background = build(synthetic_voc(tmp / "b_voc", 0, 2, 1), tmp / "background")
    return person, background


@pytest.fixture(scope="module")
def portraits6(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("p6")
    return voc_subset(shared_data / "portraits", tmp / "voc", {"train": 4, "val": 2})


@pytest.fixture(scope="module")
def labelled(shared_data, portraits6, tmp_path_factory):
    """portraits6 labelled by MediaPipe selfie (flip-averaged) and built."""
    from mobile_seg.label import LabelConfig, label
    tmp = tmp_path_factory.mktemp("lab")
    result = label(shared_data / "models/selfie_segmentation.tflite", portraits6, tmp / "voc",
                   LabelConfig(flip=True), progress=False)
    return result, build(tmp / "voc", tmp / "built")


def sources_of_batches(data, weights, batches=40):
    """Fraction of examples that came from the all-person set (by their labelled pixels)."""
    from mobile_seg.data.augment import make_train_dataset
    cfg = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    tc = TrainConfig(batch_size=8, data_weights=weights, jitter=False)
    from_person = total = 0
    for images, masks, target, weight in make_train_dataset(data, cfg, tc, seed=0).take(batches):
        assert images.shape == (8, SIZE, SIZE, 3) and masks.shape == target.shape == weight.shape == (8, SIZE, SIZE)
        assert float(weight.numpy().max()) == 0.0  # no soft labels in these sets
        for m in masks.numpy():
            labelled = m[m != 255]
            assert labelled.size and len(np.unique(labelled)) == 1  # one source per example
            from_person += int(labelled[0] == 1)
            total += 1
    return from_person / total


def test_data_weights_choose_the_mix(two_sets):
    assert sources_of_batches(list(two_sets), (1.0, 0.0)) == 1.0
    assert sources_of_batches(list(two_sets), (0.0, 1.0)) == 0.0
    # default: in proportion to size (6 vs 2 images) -> 0.75 expected over 320 draws
    assert 0.65 < sources_of_batches(list(two_sets), None) < 0.85
    assert 0.4 < sources_of_batches(list(two_sets), (1.0, 1.0)) < 0.6


def test_soft_label_loss_is_zero_at_the_target_and_matches_numpy():
    from mobile_seg.losses import soft_label_loss
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7, 2)).astype(np.float32)
    p = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
    ones = np.ones(p.shape, np.float32)
    assert np.abs(soft_label_loss(p, ones, logits).numpy()).max() < 1e-5
    t = rng.uniform(0, 1, size=p.shape).astype(np.float32)
    w = (rng.uniform(size=p.shape) < 0.5).astype(np.float32)
    kl = t * np.log(t / p) + (1 - t) * np.log((1 - t) / (1 - p))
    want = (w * kl).mean(axis=(1, 2))
    got = soft_label_loss(t, w, logits).numpy()
    assert np.allclose(got, want, atol=1e-4) and (got > 0).all()
    assert np.abs(soft_label_loss(t, np.zeros_like(w), logits).numpy()).max() == 0.0


def test_label_a_voc_folder(shared_data, portraits6, labelled):
    result, _ = labelled
    out = result.out
    assert (result.labelled, result.skipped, result.total) == (6, 0, 6)
    ids = (portraits6 / "ImageSets/Segmentation/train.txt").read_text().split()
    for i in ids:
        # the source's own mask is kept byte for byte; the teacher's label is added
        assert (out / "SegmentationClass" / f"{i}.png").read_bytes() == \
            (portraits6 / "SegmentationClass" / f"{i}.png").read_bytes()
        soft = np.asarray(Image.open(out / "SegmentationSoft" / f"{i}.png"))
        truth = np.asarray(Image.open(portraits6 / "SegmentationClass" / f"{i}.png"))
        assert soft.dtype == np.uint8 and soft.shape == truth.shape
        # MediaPipe finds the portrait: high probability on the person, low elsewhere
        assert soft[truth == 1].mean() > 0.75 * 255 and soft[truth == 0].mean() < 0.25 * 255
    assert (out / "ImageSets/Segmentation/val.txt").read_text().split() == \
        (portraits6 / "ImageSets/Segmentation/val.txt").read_text().split()
    info = json.loads((out / "label.json").read_text())
    assert info["config"]["flip"] is True and info["own_masks"] == 6 and len(info["teacher_sha256"]) == 64


def test_label_resumes_and_refuses_another_teacher(shared_data, labelled):
    from mobile_seg.label import LabelConfig, label
    result, _ = labelled
    teacher = shared_data / "models/selfie_segmentation.tflite"
    (result.out / "SegmentationSoft" / sorted((result.out / "SegmentationSoft").iterdir())[0].name).unlink()
    again = label(teacher, json.loads((result.out / "label.json").read_text())["source"], result.out,
                  LabelConfig(flip=True), progress=False)
    assert (again.labelled, again.skipped) == (1, 5)
    with pytest.raises(ConfigError, match="another teacher, source or options"):
        label(teacher, again.summary["source"], result.out, LabelConfig(flip=False), progress=False)


def _unlabelled_folder(shared_data, folder, n):
    """A folder of the first `n` selfies_unlabeled photos: (folder, file names)."""
    folder.mkdir()
    src = shared_data / "selfies_unlabeled"
    names = sorted(p.name for p in src.iterdir() if p.suffix == ".jpg")[:n]
    for name in names:
        (folder / name).write_bytes((src / name).read_bytes())
    return folder, names


def test_label_unlabelled_images_hard_masks_band_and_boxes(shared_data, tmp_path):
    from mobile_seg.label import IGNORE_LABEL, LabelConfig, box_mask, hard_mask, label
    prob = np.array([[0.0, 0.45, 0.5, 0.55, 0.61, 1.0]], np.float32)
    assert hard_mask(prob, 0.2).tolist() == [[0, 255, 255, 255, 1, 1]]
    assert hard_mask(prob, 0.0).tolist() == [[0, 0, 1, 1, 1, 1]]
    assert box_mask((10, 10), [[2, 2, 4, 6]], 0.5).sum() == (8 - 0) * (5 - 1)  # rows 0..7, cols 1..4
    folder, names = _unlabelled_folder(shared_data, tmp_path / "frames", 3)
    boxes = tmp_path / "boxes.json"
    first = names[0][:-4]
    boxes.write_text(json.dumps({first: [[0, 0, 10, 10]]}))
    result = label(shared_data / "models/selfie_segmentation.tflite", folder, tmp_path / "out",
                   LabelConfig(band=0.3, boxes=str(boxes), box_margin=0.0), progress=False)
    assert result.total == 3 and result.summary["splits"] == {"train": 3}
    for n in names:
        mask = np.asarray(Image.open(tmp_path / "out/SegmentationClass" / f"{n[:-4]}.png"))
        soft = np.asarray(Image.open(tmp_path / "out/SegmentationSoft" / f"{n[:-4]}.png")).astype(int)
        assert set(np.unique(mask)) <= {0, 1, IGNORE_LABEL}
        p = soft / 255.0
        assert (mask[p > 0.66] == 1).all() and (mask[p < 0.34] == 0).all()
        assert (mask[np.abs(p - 0.5) < 0.14] == IGNORE_LABEL).all()
    boxed = np.asarray(Image.open(tmp_path / "out/SegmentationSoft" / f"{first}.png"))
    assert boxed[10:, :].max() == 0 and boxed[:, 10:].max() == 0  # nothing outside the box
    # the folder builds as a dataset with soft labels
    built = build(tmp_path / "out", tmp_path / "built")
    assert json.loads((built / "descriptor.json").read_text())["soft_labels"] == 3


def test_label_a_video(shared_data, tmp_path):
    from mobile_seg.label import LabelConfig, label
    video = tmp_path / "clip.mp4"
    cap = cv2.VideoCapture(str(shared_data / "videos/asl_again.mkv"))
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(7):
        ok, frame = cap.read()
        assert ok
        w.write(cv2.resize(frame, (160, 120)))
    w.release()
    cap.release()
    result = label(shared_data / "models/selfie_segmentation.tflite", video, tmp_path / "out",
                   LabelConfig(every=3, max_side=96), progress=False)
    ids = (tmp_path / "out/ImageSets/Segmentation/train.txt").read_text().split()
    assert ids == ["clip_000000", "clip_000003", "clip_000006"] and result.total == 3
    frame = cv2.imread(str(tmp_path / "out/JPEGImages/clip_000003.jpg"))
    assert frame.shape == (72, 96, 3)
    assert np.asarray(Image.open(tmp_path / "out/SegmentationSoft/clip_000003.png")).shape == (72, 96)


def test_label_holds_out_a_val_split(shared_data, tmp_path):
    from mobile_seg.label import _id_hash, hold_out, label
    # images: by a hash of the id, the same ids on the same side whatever else is listed
    ids = [f"img{i:04d}" for i in range(2000)]
    split = hold_out("images", {"train": ids}, 0.3, tmp_path)
    assert sorted(split["train"] + split["val"]) == ids and not set(split["train"]) & set(split["val"])
    assert 0.27 < len(split["val"]) / len(ids) < 0.33
    assert all(_id_hash(i) < 0.3 for i in split["val"]) and all(_id_hash(i) >= 0.3 for i in split["train"])
    assert hold_out("images", {"train": ids[:500]}, 0.3, tmp_path)["val"] == \
        [i for i in split["val"] if i in set(ids[:500])]
    # a video: its last frames, one block
    frames = [f"clip_{i:06d}" for i in range(0, 50, 5)]
    assert hold_out("video", {"train": frames}, 0.25, tmp_path) == {"train": frames[:-2], "val": frames[-2:]}
    with pytest.raises(ConfigError, match="too few"):
        hold_out("video", {"train": frames[:1]}, 0.5, tmp_path)
    with pytest.raises(ConfigError, match="leaves val empty"):
        hold_out("images", {"train": ids[:3]}, 0.001, tmp_path)
    with pytest.raises(ConfigError, match="has splits of its own"):
        hold_out("voc", {"train": ids[:3], "val": ids[3:5]}, 0.3, tmp_path)

    # end to end: a folder of 8 images, half held out; a rerun without it drops val.txt
    folder, names = _unlabelled_folder(shared_data, tmp_path / "frames", 8)
    teacher = shared_data / "models/selfie_segmentation.tflite"
    res = run_cli("label", teacher, folder, "--out", tmp_path / "out", "--val-fraction", "0.5",
                  "--quiet", "--json")
    assert res.exit_code == 0, res.output
    want = hold_out("images", {"train": sorted(n[:-4] for n in names)}, 0.5, folder)
    splits_dir = tmp_path / "out/ImageSets/Segmentation"
    assert (splits_dir / "train.txt").read_text().split() == want["train"]
    assert (splits_dir / "val.txt").read_text().split() == want["val"]
    assert json.loads(res.stdout.splitlines()[-1])["splits"] == {k: len(v) for k, v in want.items()}
    assert f"(train {len(want['train'])}, val {len(want['val'])})" in res.stdout
    built = build(tmp_path / "out", tmp_path / "built")
    desc = json.loads((built / "descriptor.json").read_text())
    assert {k: v["num_examples"] for k, v in desc["splits"].items()} == {k: len(v) for k, v in want.items()}
    again = label(teacher, folder, tmp_path / "out", progress=False)   # resumes: nothing to label
    assert (again.labelled, again.skipped) == (0, 8) and not (splits_dir / "val.txt").exists()
    res = run_cli("label", teacher, folder, "--out", tmp_path / "o2", "--val-fraction", "1")
    assert res.exit_code == 2 and error_lines(res.stderr) == ["error: --val-fraction must be in [0, 1), got 1.0"]
    assert not (tmp_path / "o2").exists()


def run_cli(*args):
    """`mobile-seg ARGS` in this process (click's runner: exit code, stdout, stderr)."""
    from click.testing import CliRunner
    from mobile_seg.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def test_label_errors(shared_data, tmp_path):
    res = run_cli("label", shared_data / "MANIFEST.md", shared_data / "portraits", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "MANIFEST.md" in error_lines(res.stderr)[0]
    res = run_cli("label", shared_data / "models/selfie_segmentation.tflite", tmp_path / "nothing",
                  "--out", tmp_path / "o")
    assert res.exit_code == 2 and error_lines(res.stderr) == [f"error: {tmp_path / 'nothing'}: not found"]
    res = run_cli("label", shared_data / "models/selfie_segmentation.tflite", shared_data / "portraits",
                  "--out", tmp_path / "o", "--band", "1.5")
    assert res.exit_code == 2 and "--band must be in [0, 1)" in error_lines(res.stderr)[0]
    assert not (tmp_path / "o").exists()


def test_soft_labels_follow_the_augmentation(tmp_path):
    """Left half soft 1, right half 0; the mask is all person. After random scale, crop and
    flip the target must still be 1 on the image's (possibly flipped) left half."""
    from mobile_seg.data.augment import make_train_dataset
    built = build(synthetic_voc(tmp_path / "voc", 1, 4, 0, soft=True), tmp_path / "built")
    plain = build(synthetic_voc(tmp_path / "voc0", 0, 2, 1), tmp_path / "built0")
    desc = json.loads((built / "descriptor.json").read_text())
    assert desc["soft_labels"] == 4
    cfg = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    tc = TrainConfig(batch_size=4, jitter=False, min_scale=0.7, max_scale=1.3)
    seen_flip = seen_plain = False
    for _images, masks, target, weight in make_train_dataset([built, plain], cfg, tc, seed=3).take(20):
        for m, t, w in zip(masks.numpy(), target.numpy(), weight.numpy()):
            if (m == 0).any():  # the set without soft labels: weight 0 everywhere
                assert w.max() == 0.0
                seen_plain = True
                continue
            inside = (w > 0)
            assert ((m == 1) == inside).all()  # weight 1 exactly where the image is
            cols = np.where(inside.any(0))[0]
            left, right = t[inside[:, cols[0]], cols[0]], t[inside[:, cols[-1]], cols[-1]]
            assert {round(float(left.mean())), round(float(right.mean()))} == {0, 1}
            seen_flip |= right.mean() > 0.5
    assert seen_flip and seen_plain


def test_check_flags_a_bad_soft_label(tmp_path):
    from mobile_seg.data.check import check_dataset
    voc = synthetic_voc(tmp_path / "voc", 1, 2, 0, soft=True)
    Image.fromarray(np.zeros((48, 80, 3), np.uint8)).save(voc / "SegmentationSoft/img0.png")
    Image.fromarray(np.zeros((40, 80), np.uint8)).save(voc / "SegmentationSoft/img1.png")
    report = check_dataset(voc)
    kinds = {(p.id, p.kind) for p in report.problems}
    assert kinds == {("img0", "bad-soft-label"), ("img1", "size-mismatch")}


def test_training_learns_from_the_soft_labels(labelled, tmp_path):
    """The same first step with and without the soft-label term: only the weight differs,
    so a dropped term would give equal losses."""
    from mobile_seg.training import train
    _, built = labelled
    cfg = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    losses = {}
    for w in (0.0, 4.0):
        tc = TrainConfig(steps=1, batch_size=4, distill_weight=w)
        losses[w] = train([built], tmp_path / f"run{w}", cfg, tc, progress=False).loss
    assert losses[4.0] > losses[0.0] + 0.01, losses
    saved = json.loads((tmp_path / "run4.0" / "train_config.json").read_text())
    assert saved["distill_weight"] == 4.0 and "teacher" not in saved


def test_retired_in_loop_teacher():
    with pytest.raises(ConfigError, match="mobile-seg label"):
        TrainConfig.from_dict({"teacher": "t.tflite"})
    old = TrainConfig.from_dict({"teacher": None, "unlabeled": None, "unlabeled_weight": 0.15, "steps": 7})
    assert old.steps == 7
    tc = TrainConfig(data_weights=[1, 2], distill_weight=0.5)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc


def test_cli_bad_data_weights(portraits6, tmp_path):
    built = build(portraits6, tmp_path / "built")
    res = run_cli("train", "--data", built, "--alpha", "0.35", "--crop-size", "64", "--steps", "2",
                  "--data-weights", "1,2,3", "--out", tmp_path / "run")
    assert res.exit_code == 2, res.output
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and "--data-weights has 3 values for 1 --data" in errors[0]
    assert not (tmp_path / "run").exists()


def test_a_zero_255_mask_with_a_soft_label_is_not_the_trap(tmp_path):
    """A teacher's hard mask can hold only 0 and 255 (every person pixel in the ignore
    band); with its soft label beside it that is not the 0/255 trap. Without one it is."""
    from mobile_seg.data.check import check_dataset
    voc = synthetic_voc(tmp_path / "voc", 1, 2, 0, soft=True)
    m = np.zeros((48, 80), np.uint8)
    m[:, 30:50] = 255
    Image.fromarray(m).save(voc / "SegmentationClass/img0.png")
    assert check_dataset(voc).ok
    (voc / "SegmentationSoft/img0.png").unlink()
    assert [p.kind for p in check_dataset(voc).problems] == ["zero-255-mask"]
