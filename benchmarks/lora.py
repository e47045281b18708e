"""LoRA against full fine-tuning of the same pretrained model, side by side in one process.

Builds ``reviews_minilm`` (MiniLM-L6 with a new 2-way head, 128 tokens, batches of 32) twice, as
``transfer.mode=fine_tune`` and as ``transfer.mode=lora``, and reports for each: trainable parameters and
their share, the bytes of the training state (parameters and optimizer moments), the compiled step's memory
from XLA's memory analysis (arguments, outputs and temporaries), the first step (compilation) and the median
step time over interleaved blocks (`benchmarks.run`'s timing). Run:
``python -m benchmarks.lora [--rank 8] [--steps 5] [--blocks 3] [--max-length 128]``.
"""

from __future__ import annotations

import argparse
import platform

import jax
import numpy as np

from benchmarks.run import _time_jax


def _bytes(tree) -> int:
    return sum(int(np.size(x)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    from jaxdl.config import load_config
    from jaxdl.experiment.build import build_experiment

    overrides = ["data.train_limit=256", "data.eval_limit=64", f"data.max_length={args.max_length}",
                 "train.strategy=jit", "train.progress=False"]
    built, rows = {}, {}
    for mode in ("fine_tune", "lora"):
        config = load_config("experiments/reviews_minilm.py", [*overrides, f"transfer.mode={mode}",
                                                                f"transfer.lora_rank={args.rank}"])
        exp = build_experiment(config)
        sizes = exp.notes["transfer"]["parameters"]
        trainable = sum(v for k, v in sizes.items() if k != "frozen")
        batches = [jax.device_put(b) for b, _ in zip(exp.data.train.train_batches(config.data.batch_size, 0, 1), range(4))]
        compiled = exp.train_step.lower(exp.state, batches[0]).compile().memory_analysis()
        step_bytes = None if compiled is None else (compiled.argument_size_in_bytes + compiled.output_size_in_bytes
                                                    + compiled.temp_size_in_bytes - compiled.alias_size_in_bytes)
        rows[mode] = {"trainable": trainable, "share": trainable / sum(sizes.values()),
                      "state_mb": (_bytes(exp.state.params) + _bytes(exp.state.opt_state)) / 2**20,
                      "step_mb": None if step_bytes is None else step_bytes / 2**20}
        built[mode] = (exp.train_step, exp.state)
    timings, _ = _time_jax(built, batches, args.steps, args.blocks)
    print(f"{platform.processor() or platform.machine()}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
          f"jax {jax.__version__}; reviews_minilm, batch 32 x {args.max_length} tokens, LoRA rank {args.rank}")
    print(f"{'mode':10s} {'trainable':>10s} {'share':>7s} {'state MiB':>10s} {'step MiB':>9s} {'first s':>8s} {'ms/step':>8s}")
    for mode, row in rows.items():
        step_mb = "n/a" if row["step_mb"] is None else f"{row['step_mb']:.0f}"
        print(f"{mode:10s} {row['trainable']:10d} {row['share']:7.2%} {row['state_mb']:10.1f} {step_mb:>9s} "
              f"{timings[mode]['first_step_s']:8.1f} {timings[mode]['ms']:8.0f}")
    print(f"lora / fine_tune step time: {timings['lora']['ms'] / timings['fine_tune']['ms']:.2f}")


if __name__ == "__main__":
    main()
