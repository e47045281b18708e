"""Training throughput (examples/s) of one train step under each parallel strategy and device count.

Each device count runs in its own process (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` on CPU
must be set before jax starts); inside it the same model, batch and optimizer are timed under ``jit``,
``pmap`` and ``mesh``, and with bfloat16 compute. On CPU fake devices share the same cores, so this
measures the overhead of each strategy, not a speed-up; on a GPU/TPU host it measures the real thing.
Run: ``python -m benchmarks.parallel [--devices 1,2,8] [--model mnist_cnn|mlp] [--steps 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _measure(model_name: str, strategy: str, precision: str, batch_size: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdl.distributed.parallel import make_parallel
    from jaxdl.losses import softmax_cross_entropy
    from jaxdl.metrics import classification_metrics
    from jaxdl.models import create_model
    from jaxdl.training.loop import MAX_STEPS_IN_FLIGHT
    from jaxdl.training.optimizers import make_optimizer
    from jaxdl.training.state import create_train_state
    from jaxdl.training.step import make_train_step

    if model_name == "mnist_cnn":  # the main experiment's model
        model = create_model("convnet", channels=(16, 32, 64), batch_norm=True, dense=(128,), num_outputs=10)
    else:
        model = create_model("mlp", hidden_sizes=(512, 512), num_outputs=10)
    parallel = make_parallel(strategy)
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-3}, 100, 1)
    state = parallel.put_state(create_train_state(model, tx, jnp.zeros((1, 28, 28, 1)), 0, precision))
    step = parallel.compile_train_step(make_train_step(
        model, softmax_cross_entropy, classification_metrics(10), tx,
        axis_name=parallel.axis_name, precision=precision))
    rng = np.random.default_rng(0)
    batches = [parallel.put_batch({"x": rng.random((batch_size, 28, 28, 1), np.float32),
                                   "y": rng.integers(0, 10, batch_size).astype(np.int32)}) for _ in range(4)]
    start = time.perf_counter()
    state, metrics = step(state, batches[0])
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, batches[i % len(batches)])
        if i % MAX_STEPS_IN_FLIGHT == MAX_STEPS_IN_FLIGHT - 1:  # fit's bound on queued steps
            jax.block_until_ready(metrics)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    return {"strategy": strategy, "precision": precision, "devices": jax.device_count(),
            "examples_per_s": steps * batch_size / seconds, "ms_per_step": 1000 * seconds / steps,
            "first_step_s": compile_seconds}


def _worker(args: argparse.Namespace) -> None:
    import jax

    strategies = ["jit"] if jax.device_count() == 1 else ["jit", "pmap", "mesh"]
    rows = [_measure(args.model, s, "float32", args.batch_size, args.steps) for s in strategies]
    rows.append(_measure(args.model, strategies[-1], "bfloat16", args.batch_size, args.steps))
    print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", default="1,2,8", help="fake CPU device counts (ignored on GPU/TPU)")
    parser.add_argument("--model", default="mnist_cnn", choices=["mnist_cnn", "mlp"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    import jax

    print(f"# parallel strategies, {args.model}, batch {args.batch_size}, {platform.machine()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}")
    print(f"{'devices':>7} {'strategy':>8} {'precision':>9} {'examples/s':>11} {'ms/step':>8} {'vs 1-device jit':>15} {'first step s':>12}")
    counts = [int(c) for c in args.devices.split(",")] if jax.default_backend() == "cpu" else [jax.device_count()]
    baseline = None
    for count in counts:
        env = dict(os.environ)
        if jax.default_backend() == "cpu":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        out = subprocess.run([sys.executable, "-m", "benchmarks.parallel", "--worker", "--model", args.model,
                              "--batch-size", str(args.batch_size), "--steps", str(args.steps)],
                             env=env, capture_output=True, text=True, check=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            if baseline is None:
                baseline = row["examples_per_s"]
            print(f"{row['devices']:>7} {row['strategy']:>8} {row['precision']:>9} {row['examples_per_s']:>11.0f} "
                  f"{row['ms_per_step']:>8.1f} {row['examples_per_s'] / baseline:>15.2f} {row['first_step_s']:>12.1f}")


if __name__ == "__main__":
    main()
