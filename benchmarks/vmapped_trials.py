"""Eight learning-rate trials of the MNIST MLP: one vmapped program vs eight runs one after another.

Both modes use `jaxdl.tune.fit_stacked` with the same batches and initial state, so they compute the same
numbers (checked here); only the scheduling differs. Wall time includes compilation (once for the vmapped
program, once for the single-trial step). Run: ``python -m benchmarks.vmapped_trials [--examples 10000]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=10000, help="MNIST training images used")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    from jaxdl.data.datasets import load_dataset
    from jaxdl.losses import softmax_cross_entropy
    from jaxdl.metrics import classification_metrics
    from jaxdl.models import create_model
    from jaxdl.optim import make_optimizer, set_hyperparams
    from jaxdl.train.state import create_train_state
    from jaxdl.train.step import make_eval_step, make_train_step
    from jaxdl.tune import fit_stacked, stack

    data = load_dataset({"name": "mnist", "normalize": True, "train_limit": args.examples, "eval_limit": 2000})
    model = create_model("mlp", hidden_sizes=(args.hidden, args.hidden), num_outputs=10)
    steps = len(data.train) // args.batch_size
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-3, "schedule": "cosine"}, steps, args.epochs, tunable=True)
    init = create_train_state(model, tx, jnp.zeros((1, 28, 28, 1)), 0)
    rates = np.geomspace(1e-4, 1e-2, args.trials)
    states = stack([init.replace(opt_state=set_hyperparams(init.opt_state, learning_rate=r)) for r in rates])
    metrics = classification_metrics(10)
    train_step = make_train_step(model, softmax_cross_entropy, metrics, tx)
    eval_step = make_eval_step(model, softmax_cross_entropy, metrics)

    def batches(epoch):
        return data.train.train_batches(args.batch_size, 0, epoch)

    def validation():
        return data.validation.eval_batches(1000)

    timings, results = {}, {}
    for mode in (True, False):
        copy = jax.tree.map(jnp.copy, states)  # the vmapped step donates its input
        start = time.perf_counter()
        results[mode] = fit_stacked(copy, train_step, eval_step, batches, args.epochs, validation, vmap=mode)
        jax.block_until_ready(results[mode].states)
        timings[mode] = time.perf_counter() - start
    gap = np.abs(results[True].final("val_accuracy") - results[False].final("val_accuracy")).max()
    print(f"# {args.trials} learning-rate trials, MLP {args.hidden}x{args.hidden}, {len(data.train)} MNIST images x "
          f"{args.epochs} epochs, batch {args.batch_size}; {platform.machine()}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}")
    print(f"vmapped (one program)   {timings[True]:8.1f} s")
    print(f"sequential ({args.trials} runs)     {timings[False]:8.1f} s")
    print(f"speed-up                {timings[False] / timings[True]:8.2f}x")
    print(f"largest validation-accuracy difference between the modes: {gap:.4f} (float32 summation order)")
    print("val accuracy per trial:", " ".join(f"{a:.4f}" for a in results[True].final("val_accuracy")))


if __name__ == "__main__":
    main()
