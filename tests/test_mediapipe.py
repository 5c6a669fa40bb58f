"""A real client: MediaPipe Tasks' ImageSegmenter loads every exported variant and the
shipped models from their metadata alone, and its confidence mask agrees with our runtime's
person probability (IoU >= 0.97 at 0.5) on real images.

mediapipe cannot share our venv (it would upgrade absl-py and add a second cv2), so setup.sh
makes `.venv-mediapipe` and the test runs tests/mediapipe_segment.py there, once for all
models. The variants come from a small network with set weights (person logit = 6 x the
normalised luminance, smoothed by a strided 3x3 conv): random weights make int8 outputs
depend on each kernel's rounding, a smooth function does not. Their images are real photos
resized to the model input, so both sides feed the same pixels and any disagreement is the
metadata's (normalisation, quantisation, activation, labels). The shipped models get the
full-size photos: there each side resizes its own way (MediaPipe samples corner-aligned,
we centre-aligned; a selfie model agrees at 0.989 on these photos).
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MP_PYTHON = REPO / ".venv-mediapipe" / "bin" / "python"
MIN_IOU = 0.97
SIZE = 64
VARIANTS = [("fp32", "float"), ("fp16", "float"), ("dynamic", "float"), ("int8", "float"),
            ("qat-int8", "float"), ("int8", "uint8"), ("qat-int8", "uint8")]


def luminance_model(size: int = SIZE):
    """conv 3x3/2 (mean luminance) -> BN -> ReLU -> 1x1 logits (person = 6 x luminance) -> x2."""
    import tf_keras
    L = tf_keras.layers
    x = inp = L.Input((size, size, 3), name="image")
    x = L.Conv2D(1, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = L.BatchNormalization(name="conv_BatchNorm")(x)
    x = L.ReLU(name="conv_relu")(x)
    x = L.Conv2D(2, 1, name="logits")(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name="logits_upsample")(x)
    model = tf_keras.Model(inp, x)
    lum = np.array([0.299, 0.587, 0.114], np.float32) / 9.0
    model.get_layer("conv").set_weights([np.broadcast_to(lum[None, None, :, None], (3, 3, 3, 1)).copy()])
    bn = model.get_layer("conv_BatchNorm")
    bn.set_weights([np.ones(1), np.ones(1), np.zeros(1), np.ones(1) - bn.epsilon])  # y = x + 1 >= 0
    model.get_layer("logits").set_weights([np.array([[[[0.0, 6.0]]]], np.float32), np.array([0.0, -6.0], np.float32)])
    return model


def photos(shared_data: Path) -> list[Path]:
    ids = (shared_data / "portraits/ImageSets/Segmentation/val.txt").read_text().split()[:6]
    davis = (shared_data / "davis_parkour/ImageSets/Segmentation/all.txt").read_text().split()
    return ([shared_data / f"portraits/JPEGImages/{i}.jpg" for i in ids]
            + [shared_data / f"davis_parkour/JPEGImages/{i}.jpg" for i in davis[10:100:30]])


def run_mediapipe(models: dict[str, Path], images: list[Path], work: Path) -> dict[str, np.ndarray]:
    if not MP_PYTHON.exists():
        pytest.fail(f"{MP_PYTHON} missing: run ./setup.sh (it makes the mediapipe environment)")
    job, out = work / "job.json", work / "masks.npz"
    job.write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}, "images": [str(p) for p in images]}))
    proc = subprocess.run([str(MP_PYTHON), str(REPO / "tests/mediapipe_segment.py"), str(job), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def agreement(path: Path, images: list[Path], masks: dict, name: str) -> tuple[float, float]:
    """(dataset-level IoU, lowest per-image IoU) of person >= 0.5, ours vs MediaPipe's."""
    from mobile_seg.tflite_model import TFLiteModel
    model = TFLiteModel(path, num_threads=1)
    inter = union = 0
    worst = 1.0
    for i, image_path in enumerate(images):
        rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        fit = model.spec.input.plan_fit(rgb.shape[:2])
        ours = model.spec.input.map_back(model.person_probability(rgb), fit) >= 0.5
        conf = masks[f"{name}/{i}"]
        theirs = (conf[model.person_index] if conf.shape[0] > 1 else conf[0]) >= 0.5
        assert theirs.shape == ours.shape
        n_i, n_u = int((ours & theirs).sum()), int((ours | theirs).sum())
        inter, union = inter + n_i, union + n_u
        worst = min(worst, n_i / n_u if n_u else 1.0)
    return (inter / union if union else 1.0), worst


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data):
    """Every variant of the luminance model (float and uint8 I/O), and real photos at its size."""
    from converters.export import export
    from mobile_seg.config import ModelConfig
    from mobile_seg.qat import calibrate_ranges, quantize
    from mobile_seg.spec import InputSpec
    root = tmp_path_factory.mktemp("mediapipe")
    config = ModelConfig(alpha=0.35, input_size=(SIZE, SIZE))
    model = luminance_model()
    small = []
    for k, p in enumerate(photos(shared_data)):
        small.append(root / f"photo{k}.png")
        cv2.imwrite(str(small[-1]), cv2.resize(cv2.imread(str(p)), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    inp = InputSpec.from_config(config)
    calib = np.stack([inp.normalise(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
                      for p in small])  # the images themselves, normalised as export does
    qat_model = quantize(model)
    calibrate_ranges(qat_model, model, calib)
    files = {}
    for variant, io in VARIANTS:
        res = export(out_dir=root / io, variants=variant, float_model=model, qat_model=qat_model, config=config,
                     calibration_images=calib, io_type=io, labels=["background", "person"])
        files[f"{variant}/{io}"] = res.files[0].path
    res = export(out_dir=root / "probabilities", variants="fp32", float_model=model, config=config,
                 output="probabilities", labels=["background", "person"])
    files["fp32/float/probabilities"] = res.files[0].path
    return root, files, small


@pytest.fixture(scope="module")
def masks(exported, shared_data):
    from mobile_seg.shipped import model_path
    root, files, small = exported
    shipped = {"default": model_path("default"), "landscape": model_path("landscape"),
               "selfie": shared_data / "models/selfie_segmentation.tflite"}
    small_masks = run_mediapipe(files, small, root)
    big_masks = run_mediapipe(shipped, photos(shared_data), root)
    return small_masks, big_masks, shipped


def test_mediapipe_loads_every_variant_and_agrees(exported, masks):
    root, files, small = exported
    small_masks = masks[0]
    refused = {k: str(v) for k, v in small_masks.items() if k.endswith("/error")}
    assert refused == {}
    figures = {name: agreement(path, small, small_masks, name) for name, path in files.items()}
    print("\nMediaPipe vs our runtime (IoU, worst image):", json.dumps(figures))
    for name, (iou, _) in figures.items():
        assert iou >= MIN_IOU, (name, figures)
    assert figures["fp32/float"][1] > 0.999  # float, same pixels: the same numbers


def test_mediapipe_loads_the_shipped_models_and_agrees(shared_data, masks):
    big_masks, shipped = masks[1], masks[2]
    assert not [k for k in big_masks if k.endswith("/error")]
    images = photos(shared_data)
    figures = {name: agreement(path, images, big_masks, name) for name, path in shipped.items()}
    print("\nMediaPipe vs our runtime, full-size photos (IoU, worst image):", json.dumps(figures))
    for name, (iou, _) in figures.items():
        assert iou >= MIN_IOU, (name, figures)
