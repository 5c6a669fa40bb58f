"""TFLite export: every variant of a tiny DeepLab (alpha 0.35, 64 px), heads, metadata, errors."""
from __future__ import annotations

import numpy as np
import pytest

import mobile_seg  # noqa: F401  (TF_USE_LEGACY_KERAS before TF)
from export_helpers import TINY, mini_model, tiny_data, tiny_export, tiny_run

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "qat-int8")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "export_session"


@pytest.fixture(scope="module")
def exported(shared_data, root):
    return tiny_export(shared_data, root)


@pytest.fixture(scope="module")
def files(exported):
    return {f.variant: f for f in exported.files}


def _real_inputs(data, n=3):
    import cv2
    from mobile_seg.data.pipeline import iterate_examples
    out = []
    for _id, image, _mask in iterate_examples(data, "val"):
        out.append(cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR))
        if len(out) == n:
            break
    return out


def test_every_variant_is_written_with_a_fixed_batch_of_one(files, root):
    from mobile_seg.tflite_model import TFLiteModel
    assert sorted(files) == sorted(VARIANTS)
    for variant, f in files.items():
        assert f.path == root / "export" / f"{variant}.tflite" and f.path.is_file()
        model = TFLiteModel(f.path)
        assert model.input_shape == (1, 64, 64, 3)
        assert [int(d) for d in model.input["shape_signature"]] == [1, 64, 64, 3]
        assert [int(d) for d in model.output["shape"]] == [1, 64, 64, 2]
    assert not list((root / "export").glob(".*tmp")), "temp files left behind"


def test_fp32_matches_keras(exported, files, shared_data, root):
    """max |Δlogit| < 1e-4 per unit of logit range (the trained portrait model: 3.8e-5 absolute)."""
    from mobile_seg.tflite_model import TFLiteModel
    model = TFLiteModel(files["fp32"].path)
    for image in _real_inputs(tiny_data(shared_data, root)):
        x = model.preprocess(image)
        ref = exported.float_model(x, training=False).numpy()
        assert np.abs(model.run(x) - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_quantized_files_are_integer_throughout(files):
    for variant in ("int8", "qat-int8"):
        census = files[variant].census
        assert census["float_convs"] == 0, (variant, census["float_ops"])
        assert census["float"] == 0, (variant, census["float_ops"])
        # float I/O: one QUANTIZE at the input, one DEQUANTIZE at the output; QAT adds the
        # requantisation of the two resize outputs into their concat's scale.
        assert census["dequantize"] == 1
        assert census["quantize"] <= 3
    ratio = files["int8"].size_bytes / files["fp32"].size_bytes
    assert ratio < 0.34, ratio  # 0.30 at alpha 1.0; scales and int32 biases weigh more at alpha 0.35


def test_batchnorm_is_folded_in_every_variant(exported, files):
    """No standalone MUL/ADD from BN: ADD only for the residual Add layers."""
    adds = sum(type(layer).__name__ == "Add" for layer in exported.float_model.layers)
    for variant, f in files.items():
        ops = f.census["by_op"]
        assert "MUL" not in ops, variant
        assert ops.get("ADD", 0) == adds, (variant, ops)
        assert "SPACE_TO_BATCH_ND" not in ops and "BATCH_TO_SPACE_ND" not in ops, variant


def test_metadata_round_trip(exported, files, root):
    from converters.metadata import read_metadata
    from mobile_seg.model_metadata import read_standard
    from mobile_seg.config import ModelConfig
    from mobile_seg.tflite_model import TFLiteModel
    for variant, f in files.items():
        meta = read_metadata(f.path.read_bytes())
        assert meta["format"] == "mobile-seg-tflite/2"
        assert meta["variant"] == variant
        assert meta["labels"] == ["background", "person"]
        assert meta["input"]["height"] == 64 and meta["input"]["width"] == 64
        assert meta["input"]["mean"] == [127.5] * 3 and meta["input"]["std"] == [127.5] * 3
        assert meta["output"] == {"kind": "logits", "person_index": 1, "dtype": "float32", "stride": 1,
                                  "activation": "softmax"}
        standard = read_standard(f.path.read_bytes())  # what MediaPipe Tasks reads
        assert standard.input_mean == [127.5] * 3 and standard.input_std == [127.5] * 3
        assert standard.input_min == [-1.0] * 3 and standard.input_max == [1.0] * 3
        assert standard.labels == ["background", "person"] and standard.activation == "softmax"
        assert standard.name == meta["name"] and standard.min_parser_version == "1.5.0"
        assert standard.author and standard.license and variant in standard.version
        assert ModelConfig.from_dict(meta["model_config"]) == ModelConfig(**TINY)
        assert meta["source"]["run"]["step"] == 5
        model = TFLiteModel(f.path)
        assert model.labels == ["background", "person"] and model.output_kind == "logits"
        assert model.input_spec["mean"] == [127.5] * 3
    assert read_metadata(files["int8"].path.read_bytes())["calibration"]["images"] == 4
    qat_meta = read_metadata(files["qat-int8"].path.read_bytes())["qat"]
    assert qat_meta["source_run"] == str(tiny_run(root).resolve()) and qat_meta["learning_rate"] == 3e-5


HEAD_CASES = [("fp32", "float", out) for out in ("logits", "probabilities", "category", "person-probability")] + [
    ("int8", "uint8", "probabilities"), ("int8", "int8", "category"),
    ("qat-int8", "int8", "person-probability"), ("qat-int8", "uint8", "logits")]


@pytest.mark.parametrize("variant,io_type,output", HEAD_CASES)
def test_output_heads(tmp_path, output, variant, io_type):
    """Each head, float and quantized, with int8/uint8 I/O, against the Keras logits + numpy head."""
    from converters.export import export, head_numpy
    from converters.metadata import read_metadata
    from mobile_seg.config import ModelConfig
    from mobile_seg.qat import calibrate_ranges, quantize
    from mobile_seg.tflite_model import TFLiteModel
    model = mini_model()
    config = ModelConfig(alpha=0.35, input_size=(32, 32))
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    qat_model = None
    if variant == "qat-int8":
        qat_model = quantize(model)
        calibrate_ranges(qat_model, model, calib)
    result = export(out_dir=tmp_path, variants=variant, float_model=model, qat_model=qat_model, config=config,
                    calibration_images=calib, io_type=io_type, output=output)
    path = result.files[0].path
    tfl = TFLiteModel(path)
    assert read_metadata(path.read_bytes())["output"]["kind"] == output
    expect_dtype = np.uint8 if output == "category" else {"float": np.float32, "int8": np.int8, "uint8": np.uint8}[io_type]
    assert np.dtype(tfl.output["dtype"]) == expect_dtype
    assert tfl.input_dtype == {"float": np.float32, "int8": np.int8, "uint8": np.uint8}[io_type]
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = (image.astype(np.float32) - 127.5) / 127.5
    ref = head_numpy(model(x[None], training=False).numpy(), output)[0]
    out = tfl.run(tfl.preprocess(image))[0]
    shape = {"logits": (32, 32, 2), "probabilities": (32, 32, 2), "category": (32, 32),
             "person-probability": (32, 32, 1)}[output]
    assert out.shape == shape
    if output == "category":
        agree = (out == ref).mean()
        assert agree > (0.999 if variant == "fp32" else 0.9), agree
    elif variant == "fp32":
        assert np.abs(out - ref).max() < 1e-4
    else:
        # 8 bits through an untrained, calibration-only net (mini_model is seeded): on average
        # about one output step off, a few clipped pixels up to ~0.1 in probability
        # (measured over 6 seeds: mean 0.002-0.004, max 0.008-0.22)
        scale = 1.0 if output != "logits" else np.abs(ref).max()
        diff = np.abs(out - ref)
        assert diff.mean() < 0.01 * scale + (0.01 if output == "logits" else 0.0), diff.mean()
        assert diff.max() < (0.15 if output != "logits" else 0.25 * scale + 0.05), diff.max()
    probs = tfl.predict_probabilities(image)
    assert probs.shape == (32, 32, 2)


def test_failed_conversion_names_the_op_and_layer_and_writes_nothing(tmp_path):
    import tensorflow as tf
    import tf_keras
    from converters.export import ExportError, export
    from mobile_seg.config import ModelConfig

    class MatrixThing(tf_keras.layers.Layer):  # MatrixInverse has no TFLite builtin kernel
        def call(self, x):
            m = tf.reshape(x[..., :4], [-1, 2, 2])
            inv = tf.linalg.inv(m + 3.0 * tf.eye(2))
            return tf.concat([tf.reshape(inv, tf.shape(x[..., :4])), x[..., 4:]], axis=-1)

    model = mini_model(extra=lambda x: MatrixThing(name="matrix_thing")(x))
    with pytest.raises(ExportError) as info:
        export(out_dir=tmp_path / "out", variants="fp32", float_model=model,
               config=ModelConfig(alpha=0.35, input_size=(32, 32)))
    msg = str(info.value)
    assert "fp32" in msg and "MatrixInverse" in msg and "matrix_thing" in msg, msg
    assert "\n" not in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_requests_are_one_line_config_errors(shared_data, root, tmp_path):
    from converters.export import export, parse_input_size
    from mobile_seg.errors import ConfigError
    run = tiny_run(root)
    with pytest.raises(ConfigError, match="applies to int8 and qat-int8 only"):
        export(run, out_dir=tmp_path, variants="fp32", io_type="int8")
    with pytest.raises(ConfigError, match="needs --data"):
        export(run, out_dir=tmp_path, variants="int8")
    with pytest.raises(ConfigError, match="needs --qat"):
        export(run, out_dir=tmp_path, variants="qat-int8")
    with pytest.raises(ConfigError, match="--run RUN_DIR or --qat"):
        export(out_dir=tmp_path, variants="fp32")
    with pytest.raises(ConfigError, match="HxW"):
        parse_input_size("big")
    assert parse_input_size("96x64") == (96, 64) and parse_input_size("80") == (80, 80)
    with pytest.raises(ConfigError, match="too small|does not fit"):
        export(run, out_dir=tmp_path, variants="fp32", input_size=(40, 40))
    assert not any(tmp_path.iterdir())


def test_export_at_another_input_size_keeps_the_weights(root):
    from converters.export import load_float_model
    from mobile_seg.checkpoint import load_run
    small, config, _ = load_run(tiny_run(root))
    big, big_config, step = load_float_model(tiny_run(root), input_size=(96, 80))
    assert big_config.input_size == (96, 80) and big.output_shape == (None, 96, 80, 2) and step == 5
    for a, b in zip(small.get_weights(), big.get_weights()):
        np.testing.assert_array_equal(a, b)
