"""Run MediaPipe Tasks' ImageSegmenter on images; runs in .venv-mediapipe (not our venv).

    .venv-mediapipe/bin/python tests/mediapipe_segment.py JOB.json OUT.npz

JOB.json: {"models": {"name": "file.tflite", ...}, "images": ["a.jpg", ...]}. For every
model and image, OUT.npz holds `<name>/<image index>`: the confidence masks [C, H, W]
float32 at the image's resolution (what the task returns). A model the task refuses gets
`<name>/error` (the message, as a 0-d string array) instead. Reads only the given files.
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np


def main(job_path: str, out_path: str) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    job = json.loads(open(job_path).read())
    images = [np.ascontiguousarray(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)) for p in job["images"]]
    out: dict[str, np.ndarray] = {}
    for name, path in job["models"].items():
        options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=path),
                                               output_confidence_masks=True, output_category_mask=False)
        try:
            segmenter = vision.ImageSegmenter.create_from_options(options)
        except Exception as e:  # noqa: BLE001 (the test reports what the task said)
            out[f"{name}/error"] = np.array(f"{type(e).__name__}: {e}".splitlines()[0])
            continue
        with segmenter:
            for i, rgb in enumerate(images):
                result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
                out[f"{name}/{i}"] = np.stack([m.numpy_view().reshape(rgb.shape[:2]).astype(np.float32)
                                               for m in result.confidence_masks])
    np.savez_compressed(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
