"""Timings of the demo's per-frame operations against the slower alternatives they replace.

    python -m demo.profile_ops --video ../shared/data/videos/asl_again.mkv

Each row: median milliseconds over `--reps` calls on a real 640×480 frame. The choices
made in the pipeline are marked with `*`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np

from demo.effects import bokeh_background, composite, disc_kernel, gaussian_background
from demo.postprocess import fast_guided_alpha, feather, guided_filter


def _median_ms(fn, reps: int) -> float:
    fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def rows(frame: np.ndarray, reps: int = 50) -> list[tuple[str, str, float]]:
    """(group, variant, ms) for each compared operation on `frame` (BGR uint8)."""
    h, w = frame.shape[:2]
    rng = np.random.default_rng(0)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    grey_small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    prob_small = cv2.GaussianBlur(rng.random((h // 2, w // 2), dtype=np.float32), (0, 0), 8)
    prob = cv2.resize(prob_small, (w, h))
    alpha = feather(prob)
    bg = gaussian_background(frame)
    guide = grey.astype(np.float32) / 255.0
    guide_small = grey_small.astype(np.float32) / 255.0
    disc = disc_kernel(22.5)
    out = []

    def add(group, variant, fn):
        out.append((group, variant, _median_ms(fn, reps)))

    add("background blur (sigma 15)", "GaussianBlur at full resolution",
        lambda: cv2.GaussianBlur(frame, (0, 0), 15))
    add("background blur (sigma 15)", "* 1/5 size, blur, upsample",
        lambda: gaussian_background(frame, 15))
    add("background blur (sigma 15)", "* same, background pixels only (no halo)",
        lambda: gaussian_background(frame, 15, alpha, small))
    add("bokeh (disc radius 22)", "filter2D disc at full resolution", lambda: cv2.filter2D(frame, -1, disc))
    add("bokeh (disc radius 22)", "* 1/6 size, gamma, disc, upsample",
        lambda: bokeh_background(frame, 15, alpha, small))
    add("guided filter", "full resolution (r 4, eps 1e-3)",
        lambda: feather(guided_filter(guide, prob, 4, 1e-3)))
    add("guided filter", "* fast: 1/2 size (r 2), coefficients upsampled",
        lambda: fast_guided_alpha(grey, guide_small, prob_small, 2, 1e-3))
    add("composite", "numpy float32", lambda: (bg + alpha[..., None] * (frame.astype(np.float32) - bg)
                                               ).astype(np.uint8))
    add("composite", "* cv2.blendLinear", lambda: composite(frame, bg, alpha))
    add("1 - alpha (scalar arithmetic)", "cv2.subtract(1.0, alpha)", lambda: cv2.subtract(1.0, alpha))
    add("1 - alpha (scalar arithmetic)", "* numpy", lambda: np.float32(1.0) - alpha)
    add("model input 256x256", "INTER_AREA from the full frame",
        lambda: cv2.resize(frame, (256, 256), interpolation=cv2.INTER_AREA))
    add("model input 256x256", "* 2x INTER_AREA copy (shared), then resize",
        lambda: cv2.resize(cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (256, 256),
                           interpolation=cv2.INTER_AREA))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--frame", type=int, default=40)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args(argv)
    cap = cv2.VideoCapture(args.video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, args.frame)
    ok, frame = cap.read()
    if not ok:
        raise SystemExit(f"cannot read frame {args.frame} of {args.video}")
    print(f"frame {frame.shape[1]}x{frame.shape[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, cv2 threads {cv2.getNumThreads()}")
    print(f"{'operation':<32}{'variant':<48}{'ms':>8}")
    for group, variant, ms in rows(frame, args.reps):
        print(f"{group:<32}{variant:<48}{ms:>8.2f}")


if __name__ == "__main__":
    main()
