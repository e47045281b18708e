"""Compile time of an LSTM train step, scanned (`jaxdl.nn.recurrent.RNN`) vs a Python-unrolled loop.

For each sequence length, lowers and compiles ``value_and_grad`` of a mean-squared loss through an LSTM
(input 32, hidden 64, batch 8) both ways, and times one compiled step. The scanned layer compiles one
step body whatever the length; the unrolled loop hands XLA one copy of the cell per step.
Run: ``python -m benchmarks.rnn_compile_time [--lengths 50,100,200,400,800]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.recurrent import RNN, LSTMCell

INPUT, HIDDEN, BATCH = 32, 64, 8


class UnrolledLSTM(nn.Module):
    """The same cell called once per step in a Python loop (what `scan` replaces)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cell = LSTMCell(HIDDEN, name="cell")
        carry = cell.initial_carry(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            carry, h = cell(carry, x[:, t])
            outputs.append(h)
        return jnp.stack(outputs, axis=1)


class ScannedLSTM(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return RNN(LSTMCell(HIDDEN, parent=None), name="rnn")(x)[1]


def measure(model: nn.Module, length: int) -> tuple[float, float]:
    """``(compile seconds, median ms per compiled step)`` for one model and sequence length."""
    x = jax.random.normal(jax.random.PRNGKey(0), (BATCH, length, INPUT))
    params = model.init(jax.random.PRNGKey(1), x[:, :2])["params"]

    def loss(p, inputs):
        return jnp.mean(model.apply({"params": p}, inputs) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    compiled = step.lower(params, x).compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(params, x))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append((time.perf_counter() - t0) * 1e3)
    return compile_seconds, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="50,100,200,400,800")
    parser.add_argument("--max-unrolled", type=int, default=200,
                        help="longest length to compile unrolled (its compile time grows faster than linearly)")
    args = parser.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]
    print(f"# LSTM compile time, {platform.machine()}, jax {jax.__version__}, backend {jax.default_backend()}, "
          f"input {INPUT}, hidden {HIDDEN}, batch {BATCH}")
    print(f"{'length':>6}  {'scan compile s':>14}  {'unrolled compile s':>18}  {'ratio':>6}  {'scan ms/step':>12}  {'unrolled ms/step':>16}")
    for length in lengths:
        scan_compile, scan_ms = measure(ScannedLSTM(), length)
        if length > args.max_unrolled:
            print(f"{length:>6}  {scan_compile:>14.2f}  {'skipped':>18}  {'':>6}  {scan_ms:>12.2f}", flush=True)
            continue
        unrolled_compile, unrolled_ms = measure(UnrolledLSTM(), length)
        print(f"{length:>6}  {scan_compile:>14.2f}  {unrolled_compile:>18.2f}  {unrolled_compile / scan_compile:>5.1f}x"
              f"  {scan_ms:>12.2f}  {unrolled_ms:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
