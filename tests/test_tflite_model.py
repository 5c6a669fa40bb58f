"""TFLiteModel (the one .tflite reader/runner) and the metadata embedded in the flatbuffer."""
from __future__ import annotations

import numpy as np
import pytest

import tiny_tflite
from converters.metadata import FORMAT, embed_metadata, is_tflite, read_metadata
from mobile_seg.errors import ModelFileError
from mobile_seg.tflite_model import TFLiteModel, op_census, random_tensor


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_tflite.tiny_models(tmp_path_factory.mktemp("tiny_tflite"))


@pytest.fixture(scope="session")
def selfie(shared_data):
    return shared_data / "models" / "selfie_segmentation.tflite"


@pytest.fixture(scope="session")
def selfie_landscape(shared_data):
    return shared_data / "models" / "selfie_segmentation_landscape.tflite"


# --- clear errors ----------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="file not found") as e:
        TFLiteModel(tmp_path / "nope.tflite")
    assert str(tmp_path / "nope.tflite") in str(e.value)


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        TFLiteModel(tmp_path)


def test_not_a_tflite(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a flatbuffer" * 4)
    with pytest.raises(ModelFileError, match="not a TFLite model"):
        TFLiteModel(bad)


def test_truncated_tflite(tiny, tmp_path):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tiny["fp32"].read_bytes()[:200])
    with pytest.raises(ModelFileError, match=r"cut.tflite: truncated or corrupt \(not a complete flatbuffer\)"):
        TFLiteModel(cut)


def test_dynamic_input_shape(tiny):
    with pytest.raises(ModelFileError, match=r"dynamic shape \[1, -1, -1, 3\]; export with a fixed input size"):
        TFLiteModel(tiny["dynamic"])


def test_custom_op_without_xnnpack_says_why(selfie):
    with pytest.raises(ModelFileError, match="Convolution2DTransposeBias.*XNNPACK"):
        TFLiteModel(selfie, xnnpack=False)


# --- conventions -----------------------------------------------------------------------

def test_mediapipe_fallback_conventions(selfie, selfie_landscape):
    m = TFLiteModel(selfie, num_threads=1)
    assert m.metadata is None
    assert m.input_size == (256, 256) and m.input_shape == (1, 256, 256, 3)
    assert m.input_dtype == np.float32 and m.input_quantization == (0.0, 0)
    assert m.input_spec["mean"] == [0.0] * 3 and m.input_spec["std"] == [255.0] * 3
    assert m.output_kind == "person-probability"
    assert m.labels == ["background", "person"] and m.person_index == 1
    m.check_segmentation_output()
    assert m.init_ms > 0 and m.size_bytes == selfie.stat().st_size
    assert TFLiteModel(selfie_landscape).input_size == (144, 256)


def test_mediapipe_person_probability(selfie):
    m = TFLiteModel(selfie, num_threads=1)
    image = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    p = m.person_probability(image)
    assert p.shape == (256, 256) and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
    probs = m.predict_probabilities(image)
    np.testing.assert_allclose(probs[..., 1], p, atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)


def test_metadata_conventions(tiny):
    m = TFLiteModel(tiny["fp32_meta"])
    assert m.metadata["name"] == "tiny-seg" and m.metadata["format"] == FORMAT
    assert m.output_kind == "logits" and m.input_spec["mean"] == [127.5] * 3
    x = m.preprocess(np.array([[[0, 127, 255]]], dtype=np.uint8).repeat(64, 0).repeat(64, 1))
    assert x.shape == (1, 64, 64, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0], [-1.0, -0.5 / 127.5, 1.0], atol=1e-6)
    probs = m.predict_probabilities(np.zeros((64, 64, 3), np.uint8))
    assert probs.shape == (64, 64, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_int8_model_quantises_input_and_dequantises_output(tiny):
    m = TFLiteModel(tiny["int8"])
    scale, zero = m.input_quantization
    assert m.input_dtype == np.int8 and scale > 0
    x = m.preprocess(np.full((64, 64, 3), 255, np.uint8))  # fallback: 255 → 1.0
    assert x.dtype == np.int8 and int(x.max()) == min(127, round(1.0 / scale) + zero)
    out = m.run(x)
    assert out.dtype == np.float32 and out.shape == (1, 64, 64, 2)


# --- random inputs ---------------------------------------------------------------------

def test_random_tensor_float32_spans_real_range():
    rng = np.random.default_rng(0)
    x = random_tensor((1, 32, 32, 3), np.float32, (0.0, 0), rng, low=np.array([-1.0, 0.0, 2.0]),
                      high=np.array([1.0, 1.0, 3.0]))
    assert x.dtype == np.float32 and x.shape == (1, 32, 32, 3)
    for c, (lo, hi) in enumerate([(-1, 1), (0, 1), (2, 3)]):
        assert lo <= x[..., c].min() < lo + 0.1 and hi - 0.1 < x[..., c].max() <= hi


def test_random_tensor_int8_uses_scale_and_zero_point():
    rng = np.random.default_rng(0)
    scale, zero = 1 / 127.5, -1
    x = random_tensor((1, 64, 64, 3), np.int8, (scale, zero), rng, low=-1.0, high=1.0)
    assert x.dtype == np.int8
    # real [-1, 1] → round(x * 127.5) - 1 in [-128.5, 126.5], clipped to the int8 range
    assert int(x.min()) == -128 and int(x.max()) in (126, 127)
    real = (x.astype(np.float32) - zero) * scale
    assert -1.01 <= real.min() and real.max() <= 1.01
    y = random_tensor((1, 64, 64, 3), np.int8, (scale, zero), rng, low=0.0, high=1.0)
    assert int(y.min()) == -1 and int(y.max()) in (126, 127)  # [0, 1] only fills the upper half


def test_random_tensor_uint8():
    rng = np.random.default_rng(0)
    raw = random_tensor((1, 64, 64, 3), np.uint8, (0.0, 0), rng)  # unquantised: raw pixels
    assert raw.dtype == np.uint8 and int(raw.min()) == 0 and int(raw.max()) == 255
    q = random_tensor((1, 64, 64, 3), np.uint8, (1 / 255, 0), rng, low=0.0, high=0.5)
    assert q.dtype == np.uint8 and int(q.max()) <= 128


def test_model_random_input_per_dtype(tiny, selfie):
    rng = np.random.default_rng(0)
    f = TFLiteModel(selfie).random_input(rng)
    assert f.dtype == np.float32 and f.shape == (1, 256, 256, 3) and 0.0 <= f.min() and f.max() <= 1.0
    meta = TFLiteModel(tiny["fp32_meta"]).random_input(rng)
    assert meta.min() < -0.9 and meta.max() > 0.9  # mean/std 127.5 → [-1, 1]
    for name, dtype in (("int8", np.int8), ("uint8", np.uint8)):
        m = TFLiteModel(tiny[name])
        x = m.random_input(rng)
        assert x.dtype == dtype and x.shape == (1, 64, 64, 3)
        scale, zero = m.input_quantization
        real = (x.astype(np.float32) - zero) * scale
        assert -0.01 <= real.min() and real.max() <= 1.01  # fallback real range [0, 1]
        m.run(x)  # the interpreter accepts it


# --- op census -------------------------------------------------------------------------

def test_op_census_int8_vs_float(tiny):
    fp32 = TFLiteModel(tiny["fp32"]).op_census()
    assert (fp32.int8, fp32.float) == (0, 5) and fp32.float_convs == 4
    assert fp32.float_ops == {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 1, "RESIZE_BILINEAR": 1}
    int8 = TFLiteModel(tiny["int8"]).op_census()
    assert (int8.int8, int8.float, int8.float_convs) == (5, 0, 0)
    uint8 = op_census(tiny["uint8"].read_bytes())
    assert uint8.int8 == 5 and uint8.quantize == 2  # uint8 ↔ int8 at both ends


def test_op_census_mediapipe(selfie):
    c = TFLiteModel(selfie).op_census()
    assert c.int8 == 0 and c.float == 136
    assert c.by_op["DEQUANTIZE (weights)"] == 110 and c.dequantize == 0  # fp16 weights, not a boundary
    assert c.float_convs == 43 + 11 + 1  # CONV_2D, DEPTHWISE_CONV_2D, Convolution2DTransposeBias
    assert c.to_dict()["float_convs"] == c.float_convs


# --- metadata round trip ---------------------------------------------------------------

def _metadata_names(blob: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(blob, 0)
    return [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]


def test_metadata_round_trip(tiny, tmp_path):
    blob = tiny["fp32"].read_bytes()
    assert read_metadata(blob) is None
    others = _metadata_names(blob)  # what the converter wrote (min_runtime_version, …)
    meta = {"name": "m", "labels": ["background", "person"], "metrics": {"portraits/val": {"miou": 0.5}}}
    once = embed_metadata(blob, meta)
    assert is_tflite(once)
    assert read_metadata(once) == {**meta, "format": FORMAT}
    twice = embed_metadata(once, {**meta, "name": "m2"})
    assert read_metadata(twice)["name"] == "m2"
    names = _metadata_names(twice)
    assert names.count("mobile_seg") == 1 and all(n in names for n in others)
    assert len(twice) < len(once) + 64  # the old payload was overwritten, not left behind
    # The model itself is untouched: same outputs.
    path = tmp_path / "with_meta.tflite"
    path.write_bytes(twice)
    x = TFLiteModel(tiny["fp32"]).random_input(np.random.default_rng(0))
    np.testing.assert_array_equal(TFLiteModel(path).run(x), TFLiteModel(tiny["fp32"]).run(x))


def test_metadata_on_mediapipe_model_keeps_custom_op(selfie, tmp_path):
    path = tmp_path / "selfie_meta.tflite"
    path.write_bytes(embed_metadata(selfie.read_bytes(), {"name": "selfie", "output": {"kind": "person-probability"}}))
    m = TFLiteModel(path)
    assert m.metadata["name"] == "selfie" and m.output_kind == "person-probability"
    x = m.random_input(np.random.default_rng(1))
    np.testing.assert_array_equal(m.run(x), TFLiteModel(selfie).run(x))


def test_embed_metadata_rejects_non_tflite():
    with pytest.raises(ValueError, match="not a TFLite"):
        embed_metadata(b"not a model at all", {"name": "x"})
