"""Benchmark: one optimizer step on k trainable rows, Keras' Adam against our LazyAdam, as k grows.

A training step's gradient touches the rows of its batch (``--batch`` centre ids, seeded, repeats summed by
``sum_duplicates`` as in training), but Keras' Adam turns the sparse gradient dense and updates the
moments and values of all k rows. ``pipeline.train.lazy_adam.LazyAdam`` (``train.optimizer=lazy_adam``)
updates only the batch's rows. Each case is a ``tf.function`` doing the gather, the gradient and
``apply_gradients`` on a ``(k, --dim)`` float32 variable, as the training step does. ``--warmup`` untimed
steps (tracing included), then ``--steps`` timed steps; the cases alternate, ``--repeat`` times, and the
median ms per step is reported, with lazy / Adam. Goal of the design: LazyAdam's step flat in k.

Run from the repository root:

    .venv/bin/python bench/optimizer_step.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from measure import versions  # noqa: E402


def step_ms(kind: str, k: int, dim: int, batch: int, warmup: int, steps: int, seed: int) -> float:
    import keras
    import tensorflow as tf

    from pipeline.train.lazy_adam import LazyAdam
    from pipeline.train.loop import sum_duplicates

    rng = np.random.default_rng(seed)
    rows = tf.Variable(rng.normal(0, 0.1, (k, dim)).astype(np.float32))
    optimizer = keras.optimizers.Adam(1e-4) if kind == "adam" else LazyAdam(1e-4)
    optimizer.build([rows])

    @tf.function
    def step(ids: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(rows, ids) ** 2)
        optimizer.apply_gradients([(sum_duplicates(tape.gradient(loss, rows)), rows)])

    ids = [tf.constant(rng.integers(0, k, batch).astype(np.int32)) for _ in range(warmup + steps)]
    for i in range(warmup):
        step(ids[i])
    started = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(ids[i])
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: [int(float(x)) for x in s.split(",")],
                        default=[1_000, 10_000, 100_000, 300_000], help="trainable rows k, comma-separated")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1024, help="centre ids per step")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(versions())
    print(f"one step: gather {args.batch} of k rows (d={args.dim}), gradient, apply_gradients; median of "
          f"{args.repeat} x {args.steps} steps")
    print(f"{'k rows':>9} {'Adam ms':>9} {'LazyAdam ms':>12} {'lazy / Adam':>12}")
    lazy_times = []
    for k in args.rows:
        times: dict[str, list[float]] = {"adam": [], "lazy": []}
        for r in range(args.repeat):
            for kind in (("adam", "lazy") if r % 2 == 0 else ("lazy", "adam")):
                times[kind].append(step_ms(kind, k, args.dim, args.batch, args.warmup, args.steps, args.seed + r))
        adam, lazy = statistics.median(times["adam"]), statistics.median(times["lazy"])
        lazy_times.append(lazy)
        print(f"{k:>9,} {adam:>9.2f} {lazy:>12.2f} {lazy / adam:>11.3f}x")
    print(f"LazyAdam, largest k / smallest k: {lazy_times[-1] / lazy_times[0]:.2f}x "
          f"({args.rows[-1]:,} vs {args.rows[0]:,} rows)")


if __name__ == "__main__":
    main()
