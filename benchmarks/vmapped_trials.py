"""Eight learning-rate trials of the MNIST MLP (or CNN): one vmapped program vs eight runs one after another.

Every schedule of `jaxdl.tune.fit_stacked` runs with the same batches and initial state, so they compute the
same numbers (checked here); only the scheduling differs: ``vmap`` (one program), ``sequential`` (the
single-trial step, trial after trial) and ``auto`` (times a few steps of both, then runs the faster; its
wall time includes that measurement). Wall time includes compilation. Run:
``python -m benchmarks.vmapped_trials [--model mlp|cnn] [--hidden 512] [--examples 10000]``.
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
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="mlp: two hidden layers of --hidden; cnn: mnist_cnn's 16-32-64 ConvNet")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    from jaxdl.data.datasets import load_dataset
    from jaxdl.losses import softmax_cross_entropy
    from jaxdl.metrics import classification_metrics
    from jaxdl.models import create_model
    from jaxdl.training.optimizers import make_optimizer, set_hyperparams
    from jaxdl.training.state import create_train_state
    from jaxdl.training.step import make_eval_step, make_train_step
    from jaxdl.tune import fit_stacked, stack

    data = load_dataset({"name": "mnist", "normalize": True, "train_limit": args.examples, "eval_limit": 2000})
    if args.model == "mlp":
        model = create_model("mlp", hidden_sizes=(args.hidden, args.hidden), num_outputs=10)
        name = f"MLP {args.hidden}x{args.hidden}"
    else:
        model = create_model("convnet", channels=(16, 32, 64), kernel_size=3, padding="SAME", pool="max",
                             batch_norm=True, dense=(128,), dropout_rate=0.1, num_outputs=10)
        name = "ConvNet 16-32-64"
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
    for schedule in ("vmap", "sequential", "auto"):
        copy = jax.tree.map(jnp.copy, states)  # the steps donate their input
        start = time.perf_counter()
        results[schedule] = fit_stacked(copy, train_step, eval_step, batches, args.epochs, validation, schedule=schedule)
        jax.block_until_ready(results[schedule].states)
        timings[schedule] = time.perf_counter() - start
    gap = np.abs(results["vmap"].final("val_accuracy") - results["sequential"].final("val_accuracy")).max()
    auto = results["auto"]
    print(f"# {args.trials} learning-rate trials, {name}, {len(data.train)} MNIST images x {args.epochs} epochs, "
          f"batch {args.batch_size}; {platform.machine()}, jax {jax.__version__}, backend {jax.default_backend()}")
    print(f"vmap (one program)      {timings['vmap']:8.1f} s")
    print(f"sequential ({args.trials} runs)     {timings['sequential']:8.1f} s")
    print(f"vmap speed-up           {timings['sequential'] / timings['vmap']:8.2f}x")
    print(f"auto                    {timings['auto']:8.1f} s: ran {auto.schedule} (measured a step of all trials: "
          f"vmap {auto.step_ms['vmap']:.1f} ms, sequential {auto.step_ms['sequential']:.1f} ms)")
    print(f"auto speed-up over the slower schedule: {max(timings['vmap'], timings['sequential']) / timings['auto']:.2f}x")
    print(f"largest validation-accuracy difference between the modes: {gap:.4f} (float32 summation order)")
    print("val accuracy per trial:", " ".join(f"{a:.4f}" for a in results["vmap"].final("val_accuracy")))


if __name__ == "__main__":
    main()
