"""`mobile-seg demo` end to end (headless): video and image outputs, stats, and every error
a user can hit. Uses MediaPipe's selfie model from ../shared/data as the segmenter."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import demo.app
from demo.app import DemoOptions, count_video_frames, run_demo
from demo.pipeline import Pipeline, Settings
from mobile_seg.cli import main
from mobile_seg.errors import ConfigError, DeviceError, ModelFileError

PORTRAIT = "portrait_142"  # full body in front of a brick wall and trees: lots of texture


@pytest.fixture(scope="module")
def model_path(shared_data) -> Path:
    return shared_data / "models" / "selfie_segmentation.tflite"


@pytest.fixture(scope="module")
def model(model_path):
    return demo.app.load_model(model_path)


@pytest.fixture(scope="module")
def video(shared_data) -> Path:
    return shared_data / "videos" / "asl_again.mkv"


@pytest.fixture(scope="module")
def portrait(shared_data):
    root = shared_data / "portraits"
    image_path = root / "JPEGImages" / f"{PORTRAIT}.jpg"
    mask = np.array(Image.open(root / "SegmentationClass" / f"{PORTRAIT}.png")) == 1
    return image_path, mask


@pytest.fixture(scope="module")
def classifier_tflite(tmp_path_factory) -> Path:
    """A valid .tflite whose output is a flat vector [1, 192] (not a segmentation map),
    built directly as a flatbuffer (one RESHAPE op), no TensorFlow needed."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils

    def tensor(shape, name, buffer, dtype=s.TensorType.FLOAT32):
        t = s.TensorT()
        t.shape, t.type, t.name, t.buffer = list(shape), dtype, name, buffer
        return t

    model = s.ModelT()
    model.version, model.description = 3, "classifier stand-in"
    shape_buf = s.BufferT()
    shape_buf.data = list(np.array([1, 192], np.int32).tobytes())
    model.buffers = [s.BufferT(), s.BufferT(), s.BufferT(), shape_buf]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RESHAPE
    code.version = 1
    model.operatorCodes = [code]
    graph = s.SubGraphT()
    graph.tensors = [tensor([1, 8, 8, 3], "image", 1), tensor([1, 192], "scores", 2),
                     tensor([2], "shape", 3, s.TensorType.INT32)]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 2], [1]
    graph.operators, graph.inputs, graph.outputs = [op], [0], [1]
    model.subgraphs = [graph]
    path = tmp_path_factory.mktemp("models") / "classifier.tflite"
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return path


def lap_var(image: np.ndarray, region: np.ndarray) -> float:
    lap = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    return float(lap[region].var())


def core_regions(mask: np.ndarray, margin: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(background, person) pixels at least `margin` px from the mask edge."""
    k = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    person = cv2.erode(mask.astype(np.uint8), k) > 0
    background = cv2.erode((~mask).astype(np.uint8), k) > 0
    return background, person


def cli(*args):
    return CliRunner().invoke(main, ["demo", *[str(a) for a in args]])


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]


# --- successful runs ---------------------------------------------------------------------
def test_video_headless_writes_a_playable_blurred_video_and_prints_stats(tmp_path, model_path, video):
    out = tmp_path / "out.mp4"
    res = cli("--video", video, "--no-window", "--output", out, "--stats", "--model", model_path)
    assert res.exit_code == 0, res.output + res.stderr
    assert f"wrote {out}: reopened, 77 frames read back" in res.stdout
    for stage in ("capture", "inference", "postprocess", "compositing", "output"):
        assert f"\n{stage} " in res.stdout
    assert "end-to-end: 77 frames" in res.stdout and "FPS" in res.stdout
    assert count_video_frames(out) == 77
    assert no_partial_files(tmp_path)
    # The background (top corners: wall and window) is blurred, the face is not.
    src, dst = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(out))
    for _ in range(40):
        ok1, a = src.read()
        ok2, b = dst.read()
    assert ok1 and ok2 and a.shape == b.shape == (480, 640, 3)
    corner = np.zeros((480, 640), bool)
    corner[:150, 500:] = True  # wall + blue board, right of the person
    face = np.zeros((480, 640), bool)
    face[60:150, 290:350] = True
    assert lap_var(b, corner) < 0.3 * lap_var(a, corner)
    assert lap_var(b, face) > 0.5 * lap_var(a, face)


def test_every_2_runs_the_model_on_half_the_frames_json(tmp_path, model_path, video):
    out = tmp_path / "every2.avi"
    res = cli("--video", video, "--no-window", "--output", out, "--every", "2", "--max-frames", "20",
              "--model", model_path, "--json", "--effect", "bokeh")
    assert res.exit_code == 0, res.output + res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["frames"] == 20 and info["stats"]["inferred_frames"] == 10
    assert info["output_frames"] == 20 and info["end_reason"] == "--max-frames 20 reached"
    assert info["settings"]["every"] == 2 and info["settings"]["effect"] == "bokeh"
    assert count_video_frames(out) == 20


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_still_image_writes_a_blurred_picture(tmp_path, model_path, portrait, ext):
    image_path, mask = portrait
    out = tmp_path / f"blurred{ext}"
    res = cli("--image", image_path, "--no-window", "--output", out, "--model", model_path)
    assert res.exit_code == 0, res.output + res.stderr
    before, after = cv2.imread(str(image_path)), cv2.imread(str(out))
    assert after is not None and after.shape == before.shape
    background, person = core_regions(mask)
    assert lap_var(after, background) < 0.1 * lap_var(before, background)
    assert lap_var(after, person) > 0.7 * lap_var(before, person)
    assert no_partial_files(tmp_path)


def test_video_to_picture_of_the_last_frame_side_by_side(tmp_path, model_path, video):
    out = tmp_path / "frame.jpg"
    res = cli("--video", video, "--no-window", "--max-frames", "5", "--side-by-side", "--output", out,
              "--model", model_path)
    assert res.exit_code == 0, res.output + res.stderr
    picture = cv2.imread(str(out))
    assert picture.shape == (480, 1280, 3)
    cap = cv2.VideoCapture(str(video))
    for _ in range(5):
        ok, frame = cap.read()
    assert np.abs(picture[:, :640].astype(int) - frame).mean() < 3  # left: the untouched input
    assert np.abs(picture[:, 640:].astype(int) - frame).mean() > 3  # right: blurred background


def test_replace_and_colour_effects_on_an_image(tmp_path, model_path, portrait, shared_data):
    image_path, mask = portrait
    background, person = core_regions(mask)
    new_bg = shared_data / "portraits" / "JPEGImages" / "portrait_071.jpg"
    out = tmp_path / "replaced.png"
    res = cli("--image", image_path, "--no-window", "--output", out, "--model", model_path,
              "--effect", "replace", "--background", new_bg)
    assert res.exit_code == 0, res.output + res.stderr
    before, after = cv2.imread(str(image_path)), cv2.imread(str(out))
    fitted = demo.effects.cover_resize(cv2.imread(str(new_bg)), before.shape[:2])
    assert np.abs(after[background].astype(int) - fitted[background]).mean() < 3
    assert np.abs(after[person].astype(int) - before[person]).mean() < 3
    out = tmp_path / "colour.png"
    assert cli("--image", image_path, "--no-window", "--output", out, "--model", model_path,
               "--effect", "colour").exit_code == 0
    hsv = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2HSV)
    assert hsv[..., 1][background].mean() < 3 < hsv[..., 1][person].mean()


# --- errors ------------------------------------------------------------------------------
def last_error(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert lines, res.output
    return lines[-1]


def test_without_model_says_none_is_shipped(tmp_path, video, monkeypatch):
    import mobile_seg.shipped
    monkeypatch.setattr(mobile_seg.shipped, "MODELS_DIR", tmp_path / "no_models")
    res = cli("--video", video, "--no-window", "--output", tmp_path / "o.mp4")
    assert res.exit_code == 2
    assert last_error(res).startswith("error: no model is shipped") and "--model" in last_error(res)


def test_model_without_segmentation_output(tmp_path, video, classifier_tflite):
    res = cli("--video", video, "--no-window", "--output", tmp_path / "o.mp4", "--model", classifier_tflite)
    assert res.exit_code == 2
    assert "is not a segmentation map" in last_error(res) and last_error(res).startswith("error: ")
    assert not (tmp_path / "o.mp4").exists()


def test_missing_or_bad_model_file(tmp_path, video, shared_data):
    res = cli("--video", video, "--no-window", "--output", tmp_path / "o.mp4", "--model", tmp_path / "x.tflite")
    assert res.exit_code == 2 and "file not found" in last_error(res)
    res = cli("--video", video, "--no-window", "--output", tmp_path / "o.mp4",
              "--model", shared_data / "MANIFEST.md")
    assert res.exit_code == 2 and "not a TFLite model" in last_error(res)


def test_no_camera_suggests_video(tmp_path, model_path):
    res = cli("--camera", "97", "--no-window", "--output", tmp_path / "o.mp4", "--model", model_path)
    assert res.exit_code == 2
    assert last_error(res) == ("error: no camera at index 97; pass --video FILE or --image FILE instead")
    assert no_partial_files(tmp_path) and not (tmp_path / "o.mp4").exists()


def test_video_that_cannot_be_opened(tmp_path, model_path, shared_data):
    res = cli("--video", tmp_path / "missing.mp4", "--no-window", "--output", tmp_path / "o.mp4",
              "--model", model_path)
    assert res.exit_code == 2 and last_error(res).endswith("missing.mp4: video not found")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    res = cli("--video", bad, "--no-window", "--output", tmp_path / "o.mp4", "--model", model_path)
    assert res.exit_code == 2 and "broken.mp4: " in last_error(res)
    assert "cannot open video" in last_error(res) or "no readable frames" in last_error(res)
    assert no_partial_files(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--no-window"], "--no-window needs --output"),
    (["--no-window", "--output", "{tmp}/o.gif"], "must end in .mp4, .avi, .png, .jpg, .jpeg"),
    (["--no-window", "--output", "{tmp}/o.mp4", "--effect", "replace"], "--effect replace needs --background"),
    (["--no-window", "--output", "{tmp}/o.mp4", "--smoothing", "1.5"], "--smoothing must be in [0, 1)"),
    (["--no-window", "--output", "{tmp}/o.mp4", "--every", "0"], "--every must be >= 1"),
    (["--no-window", "--output", "{tmp}/o.mp4", "--max-frames", "0"], "--max-frames must be >= 1"),
    (["--no-window", "--output", "{tmp}/o.mp4", "--effect", "replace", "--background", "{tmp}/nope.jpg"],
     "background not found"),
    (["--image", "x.jpg"], "choose one input"),
])
def test_flag_errors(tmp_path, model_path, video, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = cli("--video", video, "--model", model_path, *args)
    assert res.exit_code == 2 and message in last_error(res), res.stderr


def test_image_output_must_be_a_picture(tmp_path, model_path, portrait):
    res = cli("--image", portrait[0], "--no-window", "--output", tmp_path / "o.mp4", "--model", model_path)
    assert res.exit_code == 2 and "an image input must end in .png, .jpg, .jpeg" in last_error(res)


def test_window_mode_without_a_display_is_a_clear_error(monkeypatch, model_path, video):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = cli("--video", video, "--model", model_path)
    assert res.exit_code == 2 and "use --no-window with --output" in last_error(res)
    monkeypatch.setenv("DISPLAY", ":987")  # no X server there: Qt would abort the process
    res = cli("--video", video, "--model", model_path)
    assert res.exit_code == 2 and "no X server on display :987" in last_error(res)


# --- camera unplugged, failures mid-run -----------------------------------------------------
class UnpluggedCamera:
    """Camera 0 delivering 12 frames of a real video, then unplugged (read fails)."""

    def __init__(self, video: Path, frames: int = 12):
        self.cap = cv2.VideoCapture(str(video))
        self.left = frames

    def isOpened(self):
        return True

    def set(self, *a):
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        time.sleep(0.01)
        return self.cap.read()

    def release(self):
        self.cap.release()


def test_unplugged_camera_stops_cleanly_finalises_output_and_prints_stats(tmp_path, monkeypatch,
                                                                          model_path, video):
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture",
                        lambda src, *a: UnpluggedCamera(video) if isinstance(src, int) else real(src, *a))
    out = tmp_path / "cam.avi"
    res = cli("--camera", "0", "--no-window", "--output", out, "--stats", "--model", model_path)
    assert res.exit_code == 2
    assert "end-to-end:" in res.stdout  # stats printed before the error
    err = last_error(res)
    assert err.startswith("error: camera 0 stopped delivering frames after 12 frames (unplugged?)")
    assert f"output finalised: {out}" in err
    n = count_video_frames(out)
    assert 1 <= n <= 12 and no_partial_files(tmp_path)


def test_failure_mid_run_leaves_no_half_written_output(tmp_path, monkeypatch, model_path, video):
    calls = {"n": 0}
    original = Pipeline.process

    def failing(self, frame, times=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return original(self, frame, times)

    monkeypatch.setattr(Pipeline, "process", failing)
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        run_demo(DemoOptions(video=str(video), model=str(model_path), output=str(out), window=False))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_demo_raises_typed_errors(tmp_path, model_path, classifier_tflite):
    with pytest.raises(ModelFileError):
        run_demo(DemoOptions(image="x.jpg", model=str(classifier_tflite), output=str(tmp_path / "o.png"),
                             window=False))
    with pytest.raises(DeviceError):
        run_demo(DemoOptions(image=str(tmp_path / "x.jpg"), model=str(model_path),
                             output=str(tmp_path / "o.png"), window=False))
    with pytest.raises(ConfigError):
        run_demo(DemoOptions(image="x.jpg", model=str(model_path), output=str(tmp_path / "o.gif"), window=False))


def test_image_output_needs_no_display(monkeypatch, tmp_path, model_path, portrait):
    """--image with --output writes the picture without --no-window and without a display."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "o.png"
    res = cli("--image", portrait[0], "--output", out, "--model", model_path)
    assert res.exit_code == 0, res.stderr
    assert cv2.imread(str(out)).shape == (640, 480, 3)


def test_video_background_replaces_frame_by_frame(tmp_path, model_path, video):
    """A looping video background: frame t of the output shows frame t mod n of the clip."""
    clip = tmp_path / "bg.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    for c in colours:
        writer.write(np.full((120, 160, 3), c, np.uint8))
    writer.release()
    out = tmp_path / "o.avi"
    res = cli("--video", video, "--output", out, "--model", model_path, "--effect", "replace",
              "--background", clip, "--max-frames", "7", "--no-window")
    assert res.exit_code == 0, res.stderr
    cap = cv2.VideoCapture(str(out))
    seen = []
    for _ in range(7):
        ok, frame = cap.read()
        corner = frame[:100, 540:].reshape(-1, 3).mean(axis=0)  # background, right of the person
        seen.append(int(np.argmin([np.abs(corner - c).sum() for c in colours])))
    assert seen == [0, 1, 2, 0, 1, 2, 0]


def test_live_update_validates_before_changing_anything(model):
    pipe = Pipeline(model, Settings())
    before = pipe.state()
    for bad, message in [({"threshold": 0.0}, "--threshold"), ({"effect": "replace"}, "needs --background"),
                         ({"smoothing": 0.2, "subject": "tallest"}, "--subject"), ({"every": 2}, "cannot change")]:
        with pytest.raises(ConfigError, match=message):
            pipe.update(bad)
        assert pipe.state() == before
    state = pipe.update({"smoothing": 0.8, "motion": 0.0, "subject": "largest", "strength": 5})
    assert (state["smoothing"], state["motion"], state["subject"], state["strength"]) == (0.8, 0.0, "largest", 5)
    assert pipe.smoother.smoothing == 0.8 and pipe.smoother.motion == 0.0 and pipe.effect.strength == 5


def test_the_shipped_model_runs_once_per_frame(monkeypatch, video):
    """The default model outputs logits; a frame must cost one invoke, not a second one
    for the softmax."""
    model = demo.app.load_model(demo.app.resolve_model_path(None))
    calls = []
    run = model.run
    monkeypatch.setattr(model, "run", lambda x: calls.append(1) or run(x))
    cap = cv2.VideoCapture(str(video))
    pipe = Pipeline(model, Settings())
    for _ in range(5):
        pipe.process(cap.read()[1])
    assert len(calls) == 5


def test_delay_shows_the_frame_of_n_calls_ago(model):
    pipe = Pipeline(model, Settings(delay=2))
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    shown = [int(pipe.process(f).frame[0, 0, 0]) for f in frames]
    assert shown == [0, 0, 0, 40, 80]


def test_settings_toggles_cycle_effects(model_path):
    from demo.app import handle_key, load_model

    pipe = Pipeline(load_model(model_path), Settings())
    state = {}
    assert handle_key(ord("e"), pipe, state) == "effect: bokeh"
    assert handle_key(ord("e"), pipe, state) == "effect: colour"
    assert handle_key(ord("e"), pipe, state) == "effect: blur"  # no background loaded: no replace
    assert handle_key(ord("s"), pipe, state) == "smoothing: off"
    assert handle_key(ord("r"), pipe, state) == "refine: none"
    assert handle_key(ord("m"), pipe, state) == "mask view: on"
    assert handle_key(ord("l"), pipe, state) == "light wrap: on"
    assert handle_key(ord("o"), pipe, state) == "overlay: off"
    assert handle_key(ord("q"), pipe, state) == "quit" and handle_key(27, pipe, state) == "quit"
    assert handle_key(-1, pipe, state) is None and handle_key(ord("x"), pipe, state) is None
    frame = np.zeros((48, 64, 3), np.uint8)
    out = pipe.process(frame).output
    assert out.shape == frame.shape


def test_without_model_wide_frames_get_the_landscape_model(tmp_path, portrait):
    """No --model: a 16:9 picture runs on the shipped "landscape" file, a 4:3 one on
    "default" (a square input would squash the wide frame)."""
    from mobile_seg.shipped import model_path as shipped
    image = cv2.imread(str(portrait[0]))
    used = {}
    for name, (h, w) in {"wide": (180, 320), "four_three": (240, 320)}.items():
        src, out = tmp_path / f"{name}.png", tmp_path / f"{name}_out.png"
        cv2.imwrite(str(src), cv2.resize(image, (w, h)))
        res = cli("--image", src, "--output", out, "--no-window", "--json")
        assert res.exit_code == 0, res.stderr
        info = json.loads(res.stdout.strip().splitlines()[-1])
        assert info["frame_size"] == [h, w] and cv2.imread(str(out)).shape == (h, w, 3)
        used[name] = info["model"]
    assert used == {"wide": str(shipped("landscape")), "four_three": str(shipped("default"))}
    assert demo.app.resolve_model_path(None, (100, 149)) == shipped("default")  # just under 3:2
    assert demo.app.resolve_model_path(None, (100, 150)) == shipped("landscape")
    assert demo.app.resolve_model_path("default", (100, 300)) == shipped("default")  # --model wins
