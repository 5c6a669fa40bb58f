"""Cost of `train --lovasz-weight` in one training step: the shipped architecture
(`mobile_seg/configs/person_labelled_192.json` at 224², batch 8, random data), one step with
cross-entropy alone and one with cross-entropy + 4 x Lovász-softmax, interleaved in one
process so that load from other jobs lands on both alike.

    .venv/bin/python experiments/lovasz_cost.py --rounds 15
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf
    from mobile_seg.config import ModelConfig, TrainConfig
    from mobile_seg.model import build_model
    from mobile_seg.training.task import make_loss_fn, make_optimizer

    cfg = json.load(open("mobile_seg/configs/person_labelled_192.json"))["model"]
    model = build_model(ModelConfig.from_dict(cfg).replace(input_size=(args.size, args.size)))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch_size, args.size, args.size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (args.batch_size, args.size, args.size)))

    def make_step(weight: float):
        tc = TrainConfig(batch_size=args.batch_size, lovasz_weight=weight)
        loss_fn, opt = make_loss_fn(model, tc, 1), make_optimizer(tc)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                _, loss = loss_fn(model(x, training=True), y)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        step()   # trace
        return step

    steps = {"cross-entropy": make_step(0.0), "cross-entropy + 4 x Lovász": make_step(4.0)}
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            step().numpy()
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ce, lv = med.values()
    print(f"median step, {args.size}², batch {args.batch_size}, {args.rounds} interleaved rounds: "
          f"cross-entropy {ce:.3f} s, + Lovász {lv:.3f} s, ratio {lv / ce:.2f}")


if __name__ == "__main__":
    main()
