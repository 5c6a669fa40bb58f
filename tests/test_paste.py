"""Copy-paste augmentation (`--paste-prob`, `--paste-weights`): people from one --data set
pasted onto the crops of the mix, with their labels."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mobile_seg.cli import main
from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ConfigError
from train_helpers import build, error_lines

SIZE = 64


def constant_voc(dst, value: int, label: int, n: int):
    """n images of one grey `value` whose masks are all `label` (train = all, val = first)."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img{i}" for i in range(n)]
    for i in ids:
        Image.fromarray(np.full((48, 80, 3), value, np.uint8)).save(dst / "JPEGImages" / f"{i}.png")
        Image.fromarray(np.full((48, 80), label, np.uint8)).save(dst / "SegmentationClass" / f"{i}.png")
    (dst / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    (dst / "ImageSets/Segmentation/val.txt").write_text(ids[0] + "\n")
    return dst


@pytest.fixture(scope="module")
def scenes_and_people(tmp_path_factory):
    """A black set labelled background (the scenes) and a white set labelled person (the
    people), so every pixel tells where it came from."""
    tmp = tmp_path_factory.mktemp("paste")
    scenes = build(constant_voc(tmp / "s_voc", 0, 0, 4), tmp / "scenes")
    people = build(constant_voc(tmp / "p_voc", 255, 1, 4), tmp / "people")
    return scenes, people


def crops(data, tc: TrainConfig, batches: int, seed: int = 0):
    from mobile_seg.data.augment import make_train_dataset
    cfg = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    for images, masks, target, weight in make_train_dataset(data, cfg, tc, seed=seed).take(batches):
        yield from zip(images.numpy(), masks.numpy(), target.numpy(), weight.numpy())


def test_pasted_people_carry_their_pixels_and_labels(scenes_and_people):
    """Only scenes are drawn (data weight 0 for the people); with prob 1 every crop gets a
    white person whose label is 1 exactly where its pixels are, at 0.4–0.7 of the crop."""
    scenes, people = scenes_and_people
    tc = TrainConfig(batch_size=4, data_weights=(1, 0), jitter=False, flip=True,
                     paste_prob=1.0, paste_weights=(0, 1), paste_min_scale=0.4, paste_max_scale=0.7)
    shares = []
    for image, mask, target, weight in crops([scenes, people], tc, 10):
        person = mask == 1
        assert person.any()
        np.testing.assert_allclose(image[person], 1.0, atol=1e-6)          # white: (255 - 127.5) / 127.5
        assert not np.isclose(image[~person], 1.0).any()                   # black scene or grey padding
        np.testing.assert_allclose(target[person], 1.0)
        assert weight.max() == 0.0                                         # no soft labels here
        assert set(np.unique(mask[~person])) <= {0, 255}
        ys, xs = np.nonzero(person)                                        # one rectangle
        assert person.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
        shares.append(person.mean())
    assert 0.4 ** 2 * 0.8 <= min(shares) and max(shares) <= 0.7 ** 2 * 1.2
    assert max(shares) - min(shares) > 0.05                                 # the size varies


def test_paste_prob_sets_how_often(scenes_and_people):
    scenes, people = scenes_and_people
    base = dict(batch_size=8, data_weights=(1, 0), jitter=False, paste_weights=(0, 1))
    pasted = [bool((m == 1).any()) for _, m, _, _ in crops([scenes, people], TrainConfig(paste_prob=0.3, **base), 20)]
    assert 0.18 <= np.mean(pasted) <= 0.42                                  # 160 coins at 0.3
    # off by default: the same mix without pasting has no person pixel at all
    assert not any((m == 1).any() for _, m, _, _ in crops([scenes, people], TrainConfig(**base), 5))


def test_paste_config_errors(scenes_and_people, tmp_path):
    with pytest.raises(ConfigError, match=r"paste-prob must be in \[0, 1\], got 1.5"):
        TrainConfig(paste_prob=1.5, paste_weights=(1,))
    with pytest.raises(ConfigError, match="--paste-prob needs --paste-weights"):
        TrainConfig(paste_prob=0.2)
    with pytest.raises(ConfigError, match="paste weights must be >= 0 and not all zero"):
        TrainConfig(paste_prob=0.2, paste_weights=(0, 0))
    with pytest.raises(ConfigError, match="need 0 < paste-min-scale <= paste-max-scale, got 0.8, 0.5"):
        TrainConfig(paste_min_scale=0.8, paste_max_scale=0.5)
    scenes, people = scenes_and_people
    r = CliRunner().invoke(main, ["train", "--data", str(scenes), "--data", str(people), "--out", str(tmp_path / "run"),
                                  "--alpha", "0.35", "--crop-size", "64", "--steps", "2", "--paste-prob", "0.5",
                                  "--paste-weights", "1,0,1", "--quiet"])
    assert r.exit_code == 2
    assert error_lines(r.stderr) == ["error: --paste-weights has 3 values for 2 --data folders"]
    assert not (tmp_path / "run").exists()
    from mobile_seg.training.checks import check_inputs
    with pytest.raises(ConfigError, match="--paste-prob pastes people .class 1., which needs a 2-class model"):
        check_inputs([scenes, people], tmp_path / "run3", ModelConfig(alpha=0.35, input_size=(SIZE, SIZE), num_classes=3),
                     TrainConfig(paste_prob=0.5, paste_weights=(0, 1)))


def test_train_with_pasted_people_records_the_setting(scenes_and_people, tmp_path):
    """A 2-step run through the CLI; the run's train config keeps the paste settings (resume)."""
    import json
    scenes, people = scenes_and_people
    r = CliRunner().invoke(main, ["train", "--data", str(scenes), "--data", str(people), "--out", str(tmp_path / "run"),
                                  "--alpha", "0.35", "--crop-size", "64", "--steps", "2", "--batch-size", "2",
                                  "--paste-prob", "0.5", "--paste-weights", "0,1", "--quiet"])
    assert r.exit_code == 0, r.output + r.stderr
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["paste_prob"] == 0.5 and saved["paste_weights"] == [0.0, 1.0]
