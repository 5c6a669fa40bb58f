"""Training: loss, LR schedule, overfitting real images, resume after SIGTERM, bad input."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from mobile_seg.cli import main
from mobile_seg.config import ModelConfig, TrainConfig
from mobile_seg.errors import ConfigError
from train_helpers import MOBILE_SEG, REPO, TINY_MODEL, build, voc_subset, with_empty_split


@pytest.fixture(scope="module")
def four_portraits(shared_data, tmp_path_factory):
    """The first 4 portraits of the shared train split, built (train) + 2 val images."""
    tmp = tmp_path_factory.mktemp("four")
    voc = voc_subset(shared_data / "portraits", tmp / "voc", {"train": 4, "val": 2})
    return build(voc, tmp / "built")


# --- loss and schedule ---------------------------------------------------------------------

def test_loss_ignores_ignore_label_and_applies_class_weights():
    import tensorflow as tf
    from mobile_seg.losses import pixel_cross_entropy
    logits = tf.constant([[[[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]]]])   # [1, 1, 3, 2]
    labels = tf.constant([[[0, 0, 255]]])
    ce = np.log1p(np.exp(-2.0))                # correct pixel
    wrong = np.log1p(np.exp(2.0))              # wrong pixel
    assert pixel_cross_entropy(labels, logits).numpy() == pytest.approx([(ce + wrong) / 2], rel=1e-5)
    weighted = pixel_cross_entropy(tf.constant([[[0, 1, 255]]]), logits, class_weights=(1.0, 3.0))
    assert weighted.numpy() == pytest.approx([(ce + 3 * ce) / 2], rel=1e-5)
    assert pixel_cross_entropy(tf.fill([1, 1, 3], 255), logits).numpy() == [0.0]


def _lovasz_reference(labels, probs, ignore=255):
    """Berman et al.'s Lovász-softmax, per image over present classes, written out in numpy."""
    out = []
    for lab, p in zip(labels, probs):
        lab, p = lab.ravel(), p.reshape(-1, p.shape[-1])
        keep = lab != ignore
        lab, p = lab[keep], p[keep]
        terms = []
        for c in range(p.shape[1]):
            fg = (lab == c).astype(np.float64)
            if fg.sum() == 0:
                continue
            err = np.abs(fg - p[:, c])
            order = np.argsort(-err, kind="stable")
            gt = fg[order]
            jac = 1 - (gt.sum() - np.cumsum(gt)) / (gt.sum() + np.cumsum(1 - gt))
            jac[1:] = jac[1:] - jac[:-1]
            terms.append(float(np.dot(err[order], jac)))
        out.append(np.mean(terms) if terms else 0.0)
    return np.array(out)


def test_lovasz_softmax_matches_the_reference_and_ignores_ignored_pixels():
    import tensorflow as tf
    from mobile_seg.losses import lovasz_softmax
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (4, 6, 7))
    labels[0, 0, :3] = 255          # some ignored pixels
    labels[1] = 0                   # no person: only the background term
    labels[2] = 255                 # nothing labelled: loss 0
    logits = rng.normal(size=(4, 6, 7, 2)).astype(np.float32)
    want = _lovasz_reference(labels, tf.nn.softmax(logits).numpy())
    assert want[1] > 0 and want[2] == 0
    got = lovasz_softmax(tf.constant(labels), tf.constant(logits)).numpy()
    assert got == pytest.approx(want, abs=1e-5)

    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(lovasz_softmax(tf.constant(labels), x))
    grad = tape.gradient(loss, x).numpy()
    assert np.abs(grad[2]).max() == 0 and np.abs(grad[0, 0, :3]).max() == 0
    assert np.abs(grad[0, 1:]).max() > 0 and np.abs(grad[1]).max() > 0
    # A perfect prediction costs nothing; a one-pixel miss of a 2-pixel person costs half
    # the person's IoU (0.5), averaged with the background's (4/5 → 0.2 off): (0.5 + 0.2) / 2.
    lab = np.zeros((1, 1, 6), np.int64)
    lab[0, 0, :2] = 1
    perfect = np.where(lab[..., None] == np.arange(2), 30.0, -30.0).astype(np.float32)
    assert lovasz_softmax(tf.constant(lab), tf.constant(perfect)).numpy() == pytest.approx([0.0], abs=1e-6)
    miss = perfect.copy()
    miss[0, 0, 1] = [30.0, -30.0]
    assert lovasz_softmax(tf.constant(lab), tf.constant(miss)).numpy() == pytest.approx([0.35], abs=1e-5)


def test_loss_fn_adds_the_weighted_lovasz_term():
    import tensorflow as tf
    from mobile_seg.losses import lovasz_softmax, pixel_cross_entropy
    from mobile_seg.training.task import make_loss_fn
    rng = np.random.default_rng(1)
    labels = tf.constant(rng.integers(0, 2, (2, 5, 5)))
    logits = tf.constant(rng.normal(size=(2, 5, 5, 2)).astype(np.float32))
    ce = pixel_cross_entropy(labels, logits).numpy().mean()
    lv = lovasz_softmax(labels, logits).numpy().mean()
    for weight, want in ((0.0, ce), (2.5, ce + 2.5 * lv)):
        loss_fn = make_loss_fn(SimpleNamespace(layers=[]), TrainConfig(batch_size=2, lovasz_weight=weight, weight_decay=0), 1)
        data_loss, total = loss_fn(logits, labels)
        assert float(data_loss) == pytest.approx(want, rel=1e-5) and float(total) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ConfigError, match="lovasz-weight must be >= 0, got -1"):
        TrainConfig(lovasz_weight=-1)


def test_poly_schedule_with_warmup():
    from mobile_seg.training.task import poly_learning_rate
    cfg = TrainConfig(steps=110, learning_rate=0.1, warmup_steps=10, lr_power=1.0)
    lr = [float(poly_learning_rate(s, cfg)) for s in (0, 4, 9, 10, 60, 110, 200)]
    assert lr == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.05, 0.0, 0.0], abs=1e-6)


# --- configs of a rerun ----------------------------------------------------------------------

def test_rerun_with_fewer_flags_keeps_the_run_config(tmp_path):
    from mobile_seg.training.resolve import resolve_configs
    ModelConfig(alpha=0.35, input_size=(64, 64), decoder_output_stride=None).save(tmp_path / "config.json")
    TrainConfig(steps=50).save(tmp_path / "train_config.json")
    model, train = resolve_configs(tmp_path, None, {"alpha": None}, {"steps": 80})
    assert (model.alpha, model.input_size, model.decoder_output_stride) == (0.35, (64, 64), None)
    assert train.steps == 80
    with pytest.raises(ConfigError, match=r"config.json: the checkpoint's model config does not match "
                                          r"the flags \(alpha: 0.35 in the run, 0.5 asked\)"):
        resolve_configs(tmp_path, None, {"alpha": 0.5}, {})


def test_config_file_then_flags(tmp_path):
    from mobile_seg.training.resolve import resolve_configs
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"model": {"alpha": 0.5, "decoder_output_stride": None},
                                "train": {"steps": 300, "learning_rate": 0.01}}))
    model, train = resolve_configs(tmp_path / "new_run", path, {"alpha": None, "output_stride": 8},
                                   {"steps": 50})
    assert (model.alpha, model.output_stride, model.decoder_output_stride) == (0.5, 8, None)
    assert (train.steps, train.learning_rate) == (50, 0.01)
    model, _ = resolve_configs(tmp_path / "new_run", path, {"decoder_output_stride": 4}, {})
    assert model.decoder_output_stride == 4
    with pytest.raises(ConfigError, match="unknown model config field"):
        path.write_text(json.dumps({"model": {"depth": 3}}))
        resolve_configs(tmp_path / "new_run", path, {}, {})


# --- the done-when: overfit 4 real images ---------------------------------------------------------

def test_tiny_model_overfits_four_real_images(four_portraits, tmp_path):
    """alpha 0.35 at 64 px, through the real input pipeline (no random scale or flip), scored
    by the real evaluator at the images' original resolution: person IoU > 0.9."""
    from mobile_seg.evaluate import evaluate_model
    from mobile_seg.training import train
    model_cfg = ModelConfig(bn_momentum=0.9, **TINY_MODEL)   # BN statistics must catch up in 150 steps
    train_cfg = TrainConfig(steps=150, batch_size=4, learning_rate=0.05, warmup_steps=0, weight_decay=0.0,
                            min_scale=1.0, max_scale=1.0, flip=False, jitter=False, checkpoint_every=75,
                            log_every=25)
    result = train(four_portraits, tmp_path / "run", model_cfg, train_cfg, progress=False)
    assert result.step == 150 and result.interrupted is None and result.loss < 0.15
    scores = evaluate_model(result.model, model_cfg, four_portraits, "train", progress=False)
    person_iou = scores.confusion.per_class_iou()[1]
    print(f"overfit: person IoU {person_iou:.3f} at original resolution, loss {result.loss:.4f}")
    assert person_iou > 0.9

    run = tmp_path / "run"
    assert ModelConfig.load(run / "config.json") == model_cfg
    assert TrainConfig.load(run / "train_config.json") == train_cfg
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-150.index", "ckpt-75.index"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["step"] == 150 and summary["images_per_sec"] > 0
    tags = _event_tags(run / "tensorboard")
    assert {"loss", "running_miou", "learning_rate", "images_per_sec", "truth_vs_prediction"} <= tags


def _event_tags(tb_dir) -> set[str]:
    import tensorflow as tf
    tags = set()
    for f in tb_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags |= {v.tag for v in event.summary.value}
    return tags


# --- interrupt and resume ----------------------------------------------------------------------

STEP_LINE = re.compile(r"^step (\d+)/(\d+)\s+loss ([0-9.]+)")


def _losses(text: str) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(3)) for m in map(STEP_LINE.match, text.splitlines()) if m}


def test_sigterm_saves_a_checkpoint_and_rerun_resumes(four_portraits, tmp_path):
    run = tmp_path / "run"
    # --steps far beyond what it can reach before the signal (no race with the end of
    # training); the rerun then asks for 10 more steps than the stop.
    args = [*MOBILE_SEG, "train", "--data", four_portraits, "--out", run, "--alpha", "0.35",
            "--crop-size", "64", "--batch-size", "4", "--steps", "100000", "--log-every", "1",
            "--checkpoint-every", "100000", "--warmup-steps", "0", "--learning-rate", "0.05",
            "--min-scale", "1", "--max-scale", "1", "--no-jitter"]
    args = [str(a) for a in args]
    proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = []
    deadline = time.time() + 240
    for line in proc.stderr:               # progress lines (not a TTY: one per step)
        first.append(line)
        m = STEP_LINE.match(line)
        if m and int(m.group(1)) >= 15:
            proc.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline, "training never reached step 15"
    out, err = proc.communicate(timeout=120)
    first_log = "".join(first) + err + out
    assert proc.returncode == 128 + signal.SIGTERM, first_log[-2000:]
    saved = re.search(r"SIGTERM: saved checkpoint at step (\d+)", first_log)
    assert saved, first_log[-2000:]
    stop_step = int(saved.group(1))
    assert 15 <= stop_step < 100000
    assert (run / "checkpoints" / f"ckpt-{stop_step}.index").is_file()

    end = stop_step + 10
    args[args.index("100000")] = str(end)   # --steps (the first "100000")
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {run} from step {stop_step}" in again.stderr
    before, after = _losses(first_log), _losses(again.stderr)
    assert sorted(before) == list(range(1, stop_step + 1))
    assert sorted(after) == list(range(stop_step + 1, end + 1))   # the curve continues where it stopped
    # resumed weights, not a fresh start: the loss goes on from its level before the stop
    assert np.mean([after[s] for s in sorted(after)[:5]]) < 0.8 * np.mean([before[s] for s in range(1, 6)])
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["step"] == end and [s["start_step"] for s in summary["sessions"]] == [0, stop_step]


# --- bad input: one clear line, non-zero exit ------------------------------------------------------

def _train_cli(*args):
    result = CliRunner().invoke(main, ["train", *map(str, args)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize("flags, message", [
    (["--backbone", "resnet101"], "error: unknown backbone 'resnet101'; choose one of mobilenetv2, xception65"),
    (["--crop-size", "16"], "error: input height 16 is too small for output stride 16: need at least 32 px"),
    (["--crop-size", "100", "--output-stride", "8"], "error: input height 100 does not fit output stride 8"),
    (["--alpha", "0.6"], "error: alpha 0.6 not supported for mobilenetv2"),
])
def test_bad_model_flags(four_portraits, tmp_path, flags, message):
    code, lines = _train_cli("--data", four_portraits, "--out", tmp_path / "run", *flags)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_bad_data_and_run_dirs(four_portraits, tmp_path):
    code, lines = _train_cli("--data", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert code == 2 and len(lines) == 1 and "not a built dataset" in lines[0]

    empty = with_empty_split(four_portraits, tmp_path / "with_empty")
    code, lines = _train_cli("--data", empty, "--out", tmp_path / "run", "--split", "empty", "--alpha", "0.35")
    assert code == 2 and lines == [f"error: {empty}: split 'empty' is empty: nothing to train on"]

    run = tmp_path / "old_run"
    ModelConfig(**TINY_MODEL).save(run / "config.json")
    code, lines = _train_cli("--data", four_portraits, "--out", run, "--alpha", "0.5", "--output-stride", "8")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {run / 'config.json'}: the checkpoint's model config does not match "
                               f"the flags (alpha: 0.35 in the run, 0.5 asked; output_stride: 16 in the run, 8 asked)")

    code, lines = _train_cli("--data", four_portraits, "--out", tmp_path / "r2", "--alpha", "0.5",
                             "--init-weights", "weights.npz")
    assert code == 2 and len(lines) == 1 and "no ImageNet weights exist for mobilenetv2 alpha 0.5" in lines[0]

    code, lines = _train_cli("--data", four_portraits, "--out", tmp_path / "r3", "--class-weights", "1,2,3")
    assert code == 2 and lines == ["error: --class-weights has 3 values, the dataset has 2 classes"]


def test_init_run_starts_a_second_stage_from_the_first(four_portraits, tmp_path):
    from mobile_seg.checkpoint import load_run
    from mobile_seg.training import train
    cfg = ModelConfig(**TINY_MODEL)
    first = train(four_portraits, tmp_path / "stage1", cfg, TrainConfig(steps=2, batch_size=2), progress=False)
    stage1 = load_run(tmp_path / "stage1")[0].get_weights()
    lines = []

    class Capture:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    # a learning rate of ~0: after its one step stage 2 still holds stage 1's weights
    # (SGD with lr ~0 changes nothing; BN statistics move, so compare the conv kernels)
    # stage 2 at another input size and output stride: the same weights (a fine-tune at a
    # higher resolution)
    cfg2 = ModelConfig(**{**TINY_MODEL, "input_size": (80, 80), "output_stride": 8})
    train(four_portraits, tmp_path / "stage2", cfg2,
          TrainConfig(steps=1, batch_size=2, learning_rate=1e-12, warmup_steps=0,
                      init_run=str(tmp_path / "stage1"), weight_decay=0.0),
          progress=True, stream=Capture())
    assert any(f"initialised from {tmp_path / 'stage1'} (step {first.step})" in line for line in lines)
    model2 = load_run(tmp_path / "stage2")[0]
    kernel = next(i for i, w in enumerate(model2.weights) if "kernel" in w.name)
    np.testing.assert_allclose(model2.get_weights()[kernel], stage1[kernel], atol=1e-6)

    code, lines = _train_cli("--data", four_portraits, "--out", tmp_path / "r4", "--alpha", "0.5",
                             "--crop-size", "96", "--init-run", tmp_path / "stage1")
    assert code == 2 and len(lines) == 1  # another width: other weights (the input size may differ)
    assert "--init-run is another model (alpha: 0.35 in the run, 0.5 asked)" in lines[0]
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(init_run="a", init_weights="b")


@pytest.mark.slow  # ~30 s; Xception is built (test_model) and quantized (test_qat) in CI, and this
# loop and eval path is the one every MobileNetV2 test above runs
def test_xception65_trains_and_evaluates(four_portraits, tmp_path):
    """The aligned Xception-65 goes through the same train -> checkpoint -> eval path (in CI:
    the smallest input output stride 16 allows, one step)."""
    from mobile_seg.evaluate import evaluate
    from mobile_seg.training import train
    cfg = ModelConfig(backbone="xception65", input_size=(32, 32))
    result = train(four_portraits, tmp_path / "run", cfg, TrainConfig(steps=1, batch_size=2, warmup_steps=0),
                   progress=False)
    assert result.step == 1 and np.isfinite(result.loss) and 0.0 < result.loss < 5.0
    assert (tmp_path / "run" / "checkpoints" / "ckpt-1.index").is_file()
    scores = evaluate(four_portraits, "val", run=tmp_path / "run", progress=False, limit=1)
    assert scores.num_examples == 1 and scores.confusion.total > 0


# --- the dataset decides its classes ---------------------------------------------------------

def test_three_class_dataset_from_build_to_export_without_num_classes(tmp_path):
    """data build -> train -> eval -> export of a 3-class dataset: the class count and names
    come from the dataset (its labels.txt), no --num-classes anywhere."""
    from conftest import make_class_voc
    voc = make_class_voc(tmp_path / "voc", n_train=3, n_val=1, size=64)
    (voc / "labels.txt").write_text("background\ncat\ndog\n")
    run = CliRunner()
    r = run.invoke(main, ["data", "build", str(voc), "--out", str(tmp_path / "built")])
    assert r.exit_code == 0, r.output + r.stderr
    r = run.invoke(main, ["train", "--data", str(tmp_path / "built"), "--out", str(tmp_path / "run"),
                          "--alpha", "0.35", "--crop-size", "64", "--steps", "2", "--batch-size", "2",
                          "--quiet"])
    assert r.exit_code == 0, r.output + r.stderr
    assert "(background, cat, dog)" in r.output
    saved = ModelConfig.load(tmp_path / "run" / "config.json")
    assert saved.num_classes == 3 and saved.class_names == ("background", "cat", "dog")
    r = run.invoke(main, ["eval", "--data", str(tmp_path / "built"), "--run", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0, r.output + r.stderr
    assert re.search(r"IoU cat\s", r.output) and re.search(r"IoU dog\s", r.output)
    r = run.invoke(main, ["vis", "--run", str(tmp_path / "run"), "--images", str(voc / "JPEGImages"),
                          "--out", str(tmp_path / "vis"), "--quiet"])
    assert r.exit_code == 0 and "colours: background black, cat (128,0,0), dog (0,128,0)" in r.output, r.output
    r = run.invoke(main, ["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "export"),
                          "--variant", "fp32", "--quiet"])   # no --data: the names come from the run
    assert r.exit_code == 0, r.output + r.stderr
    from mobile_seg.tflite_model import TFLiteModel
    model = TFLiteModel(tmp_path / "export" / "fp32.tflite")
    assert model.labels == ["background", "cat", "dog"] and model.output["shape"][-1] == 3
    record = json.loads((tmp_path / "export" / "export.json").read_text())
    assert record["settings"]["variant"] == "fp32" and record["labels"] == ["background", "cat", "dog"]


def test_a_diverged_run_is_one_error_line_exit_3(four_portraits, tmp_path):
    code, lines = _train_cli("--data", four_portraits, "--out", tmp_path / "run", "--alpha", "0.35",
                             "--crop-size", "64", "--steps", "20", "--batch-size", "2", "--warmup-steps", "0",
                             "--learning-rate", "1e30", "--quiet")
    assert code == 3 and len(lines) == 1, lines
    assert re.fullmatch(r"error: .*/run: loss became (nan|inf) at step \d+; lower --learning-rate "
                        r"\(the last checkpoint is kept\)", lines[0]), lines
