"""Calibration images: what PTQ int8 export and QAT range calibration feed the model."""
from __future__ import annotations

import os

import numpy as np

from mobile_seg.errors import DatasetError


def load_calibration_images(data_dir, config, count: int, split: str = "train", seed: int = 0) -> np.ndarray:
    """`count` normalised images [N, H, W, 3] of `split`, fitted to the input as the runtime
    does (`InputSpec.fit`, then `normalise`), drawn evenly from the whole split in a fixed order.

    `data_dir` may be a list of built datasets: an even share of each.
    """
    from mobile_seg.data.pipeline import iterate_examples, read_descriptor
    from mobile_seg.spec import InputSpec
    if not isinstance(data_dir, (str, os.PathLike)):
        dirs = list(data_dir)
        share = -(-int(count) // len(dirs))
        return np.concatenate([load_calibration_images(d, config, share, split, seed)
                               for d in dirs])[:max(1, int(count))]
    desc = read_descriptor(data_dir)
    if split not in desc["splits"]:
        raise DatasetError(f"no split {split!r} for calibration (has: {', '.join(desc['splits'])})", data_dir)
    total = int(desc["splits"][split].get("num_examples", 0))
    if total == 0:
        raise DatasetError(f"split {split!r} is empty: nothing to calibrate int8 with", data_dir)
    count = max(1, min(int(count), total))
    keep = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
    spec = InputSpec.from_config(config)
    images = [spec.normalise(spec.fit(image)) for i, (_id, image, _mask) in
              enumerate(iterate_examples(data_dir, split)) if i in keep]
    return np.stack(images)
