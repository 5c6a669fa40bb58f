"""Several --data mixed by weight, knowledge distillation from a .tflite teacher, unlabeled frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ConfigError, DatasetError
from train_helpers import TINY_MODEL, build, cli, error_lines, voc_subset

SIZE = 64


def synthetic_voc(dst, label: int, n: int, seed: int):
    """n random-noise images whose masks are all `label` (train split; val = first image)."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img{i}" for i in range(n)]
    for i in ids:
        Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(dst / "JPEGImages" / f"{i}.jpg")
        Image.fromarray(np.full((48, 80), label, np.uint8)).save(dst / "SegmentationClass" / f"{i}.png")
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
def portraits4(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("p4")
    return build(voc_subset(shared_data / "portraits", tmp / "voc", {"train": 4, "val": 2}), tmp / "built")


def person_share_of_batches(data, weights, batches=40):
    """Fraction of examples that came from the all-person set (by their labelled pixels)."""
    from mobile_seg.train import make_train_dataset
    cfg = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    tc = TrainConfig(batch_size=8, data_weights=weights, jitter=False)
    from_person = total = 0
    for images, masks in make_train_dataset(data, cfg, tc, seed=0).take(batches):
        assert images.shape == (8, SIZE, SIZE, 3) and masks.shape == (8, SIZE, SIZE)
        for m in masks.numpy():
            labelled = m[m != 255]
            assert labelled.size and len(np.unique(labelled)) == 1  # one source per example
            from_person += int(labelled[0] == 1)
            total += 1
    return from_person / total


def test_data_weights_choose_the_mix(two_sets):
    assert person_share_of_batches(list(two_sets), (1.0, 0.0)) == 1.0
    assert person_share_of_batches(list(two_sets), (0.0, 1.0)) == 0.0
    # default: in proportion to size (6 vs 2 images) -> 0.75 expected over 320 draws
    assert 0.65 < person_share_of_batches(list(two_sets), None) < 0.85
    assert 0.4 < person_share_of_batches(list(two_sets), (1.0, 1.0)) < 0.6


def test_distill_loss_is_zero_at_the_teacher_and_matches_numpy():
    from mobile_seg.distill import distill_loss
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7, 2)).astype(np.float32)
    p = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
    assert np.abs(distill_loss(p, logits).numpy()).max() < 1e-5
    t = rng.uniform(size=(2, 5, 7)).astype(np.float32)
    eps = 1e-7
    expected = (-(t * np.log(p) + (1 - t) * np.log(1 - p))
                + (t * np.log(t + eps) + (1 - t) * np.log(1 - t + eps))).mean(axis=(1, 2))
    got = distill_loss(t, logits).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (got > 0).all()


def test_teacher_finds_the_person(shared_data, portraits4):
    """MediaPipe as teacher on real training crops: higher probability on the labelled person."""
    from mobile_seg.train import make_train_dataset
    cfg = ModelConfig(alpha=0.35, input_size=(96, 96))
    tc = TrainConfig(batch_size=4, teacher=str(shared_data / "models/selfie_segmentation.tflite"),
                     min_scale=1.0, max_scale=1.0, jitter=False)
    images, masks, soft = next(iter(make_train_dataset(portraits4, cfg, tc, seed=0)))
    soft, masks = soft.numpy(), masks.numpy()
    assert soft.shape == (4, 96, 96) and soft.dtype == np.float32
    assert 0.0 <= soft.min() and soft.max() <= 1.0
    assert soft[masks == 1].mean() > 0.7 and soft[masks == 0].mean() < 0.3


def test_unlabeled_images_and_video(tmp_path):
    import cv2
    from mobile_seg.distill import list_unlabeled, read_video_frames, unlabeled_stream
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "sub" / f"f{i}.png")
    (folder / "notes.txt").write_text("not an image")
    kind, files = list_unlabeled(folder)
    assert kind == "images" and len(files) == 3
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    for i in range(12):
        writer.write(np.full((60, 80, 3), i * 20, np.uint8))
    writer.release()
    frames = read_video_frames(str(video), max_frames=4)
    assert frames.shape == (4, 60, 80, 3)
    assert [int(f.mean()) // 20 for f in frames] == [0, 3, 6, 9]  # evenly spaced
    tc = TrainConfig(teacher="t.tflite", unlabeled=str(video))
    for source in (folder, video):
        for image, mask in unlabeled_stream(source, (32, 32), tc, seed=0).take(5):
            assert image.shape == (32, 32, 3) and -1.0 <= image.numpy().min() <= image.numpy().max() <= 1.0
            assert (mask.numpy() == 255).all()  # nothing labelled: learns from the teacher only
    with pytest.raises(DatasetError, match="no images"):
        list_unlabeled(_empty(tmp_path))
    with pytest.raises(DatasetError, match="folder of images or a video"):
        list_unlabeled(folder / "notes.txt")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_config_rules():
    with pytest.raises(ConfigError, match="need --teacher"):
        TrainConfig(unlabeled="frames/")
    with pytest.raises(ConfigError, match="data weights"):
        TrainConfig(data_weights=(0.0, 0.0))
    with pytest.raises(ConfigError, match="unlabeled-weight"):
        TrainConfig(teacher="t.tflite", unlabeled="x", unlabeled_weight=1.0)
    tc = TrainConfig(data_weights=[1, 2], teacher="t.tflite")
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc


def test_cli_trains_with_teacher_and_unlabeled(shared_data, portraits4, two_sets, tmp_path):
    run = tmp_path / "run"
    res = cli("train", "--data", portraits4, "--data", two_sets[0], "--data-weights", "3,1",
              "--alpha", "0.35", "--crop-size", "64", "--steps", "4", "--log-every", "1",
              "--teacher", shared_data / "models/selfie_segmentation.tflite", "--distill-weight", "0.5",
              "--unlabeled", shared_data / "selfies_unlabeled", "--out", run, "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["step"] == 4 and np.isfinite(out["loss"])
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["data_weights"] == [3.0, 1.0] and saved["teacher"].endswith("selfie_segmentation.tflite")
    assert saved["distill_weight"] == 0.5 and saved["unlabeled"].endswith("selfies_unlabeled")


@pytest.mark.parametrize("extra, message", [
    (["--unlabeled", "{shared}/selfies_unlabeled"], "need --teacher"),
    (["--teacher", "{tmp}/missing.tflite"], "missing.tflite: --teacher not found"),
    (["--data-weights", "1,2,3"], "--data-weights has 3 values for 1 --data"),
    (["--teacher", "{shared}/MANIFEST.md"], "MANIFEST.md"),
])
def test_cli_bad_distillation_input(shared_data, portraits4, tmp_path, extra, message):
    extra = [e.format(shared=shared_data, tmp=tmp_path) for e in extra]
    res = cli("train", "--data", portraits4, "--alpha", "0.35", "--crop-size", "64", "--steps", "2",
              *extra, "--out", tmp_path / "run")
    assert res.returncode == 2, res.stderr[-2000:]
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and message in errors[0], res.stderr[-2000:]
    assert not (tmp_path / "run").exists()
