"""Knowledge distillation from a .tflite person segmenter, and unlabeled training frames.

`add_teacher_probability` runs the teacher (e.g. MediaPipe selfie) on every augmented
training crop inside tf.data, so the student sees the teacher's soft person probability
of exactly the pixels it is trained on. `unlabeled_stream` turns a folder of images or a
video into endless augmented crops whose masks are all "ignore": they train through the
distillation loss only. `distill_loss` is the per-image binary cross-entropy between the
student's softmax person probability and the teacher's.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from mobile_seg.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
IGNORE_LABEL = 255


class Teacher:
    """A .tflite segmenter giving person probability for normalised [-1, 1] crops.

    One LiteRT interpreter per thread (tf.data calls from its own thread pool and
    interpreters are not thread-safe).
    """

    def __init__(self, path: str | os.PathLike, mean_std=(127.5, 127.5), num_threads: int = 1):
        from mobile_seg.tflite_model import TFLiteModel
        self.path = Path(path)
        self.mean, self.std = mean_std
        self.num_threads = num_threads
        self._local = threading.local()
        TFLiteModel(self.path, num_threads=num_threads).check_segmentation_output()  # fail early

    def _model(self):
        model = getattr(self._local, "model", None)
        if model is None:
            from mobile_seg.tflite_model import TFLiteModel
            model = self._local.model = TFLiteModel(self.path, num_threads=self.num_threads)
        return model

    def person_probability(self, images: np.ndarray) -> np.ndarray:
        """float [B, H, W, 3] in [-1, 1] → float32 [B, H, W] person probability."""
        import cv2
        model = self._model()
        rgb = np.clip(images * self.std + self.mean, 0, 255).astype(np.uint8)
        out = np.empty(images.shape[:3], np.float32)
        for i, im in enumerate(rgb):
            p = model.person_probability(im)
            if p.shape != im.shape[:2]:
                p = cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
            out[i] = p
        return out


def add_teacher_probability(ds, teacher_path, mean_std=(127.5, 127.5)):
    """Batches (images, masks) → (images, masks, teacher person probability [B, H, W])."""
    import tensorflow as tf
    teacher = Teacher(teacher_path, mean_std)

    def run(images):
        return teacher.person_probability(images)

    def add(images, masks):
        soft = tf.numpy_function(run, [images], tf.float32, stateful=False)
        soft.set_shape(images.shape[:3])
        return images, masks, soft

    return ds.map(add, num_parallel_calls=2, deterministic=True)


def distill_loss(teacher_prob, logits):
    """Per-image mean binary cross-entropy between the student's softmax person
    probability (class 1 of 2-class logits) and the teacher's soft probability."""
    import tensorflow as tf
    logits = tf.cast(logits, tf.float32)
    # log p(person) and log p(background) of a 2-way softmax
    log_p = tf.nn.log_softmax(logits, axis=-1)
    t = tf.clip_by_value(tf.cast(teacher_prob, tf.float32), 0.0, 1.0)
    bce = -(t * log_p[..., 1] + (1.0 - t) * log_p[..., 0])
    # minus the teacher's own entropy: 0 when the student matches the teacher exactly
    eps = 1e-7
    ent = -(t * tf.math.log(t + eps) + (1.0 - t) * tf.math.log(1.0 - t + eps))
    return tf.reduce_mean(bce - ent, axis=[1, 2])


# --- unlabeled frames ----------------------------------------------------------------------

def list_unlabeled(path: str | os.PathLike) -> tuple[str, list[str]]:
    """("images", files) for a folder of images, ("video", [file]) for a video file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the --unlabeled folder", path)
        return "images", files
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", [str(path)]
    if path.is_file():
        raise DatasetError(f"--unlabeled must be a folder of images or a video "
                           f"({', '.join(VIDEO_SUFFIXES)})", path)
    raise DatasetError("--unlabeled not found", path)


def read_video_frames(path: str, max_side: int = 384, max_frames: int = 600) -> np.ndarray:
    """Evenly spaced frames of a video as RGB uint8 [N, H, W, 3]: at most `max_frames`,
    downscaled so the longer side is at most `max_side` (training crops are smaller)."""
    import cv2
    cap = cv2.VideoCapture(path)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = max(1, -(-total // max_frames)) if total > 0 else 1
    frames = []
    try:
        index = 0
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            index += 1
            if (index - 1) % step:
                continue
            h, w = frame.shape[:2]
            if max(h, w) > max_side:
                s = max_side / max(h, w)
                frame = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise DatasetError("cannot read any frame from the video", path)
    return np.stack(frames)


def unlabeled_stream(path, crop, train_config, seed: int):
    """Endless augmented (image, all-ignore mask) crops of unlabeled images or video frames."""
    import tensorflow as tf
    from mobile_seg.train import stretch_and_augment
    kind, files = list_unlabeled(path)
    if kind == "video":
        frames = read_video_frames(files[0])
        ds = tf.data.Dataset.from_tensor_slices(frames)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files)
    if train_config.shuffle_buffer > 1:
        ds = ds.shuffle(min(train_config.shuffle_buffer, 4096), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()

    def augment(index, item):
        if kind == "video":
            image = item
        else:
            image = tf.io.decode_image(tf.io.read_file(item), channels=3, expand_animations=False)
        mask = tf.fill(tf.shape(image)[:2], tf.constant(IGNORE_LABEL, tf.uint8))
        return stretch_and_augment(image, mask, index, crop, train_config, seed, IGNORE_LABEL)

    return ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
