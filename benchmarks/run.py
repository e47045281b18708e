"""The benchmark entry point: every workload in jaxdl, hand-written Flax and PyTorch eager, side by side.

For each workload of `benchmarks.workloads`: build each implementation, time its first step
(compilation for JAX), warm up, then time ``--blocks`` blocks of ``--steps`` steps and keep the median.
Prints ms/step, examples/s, achieved GFLOP/s (the hand-written Flax step's XLA flop count, the same
architecture for all three) and the speed ratios jaxdl/Flax and jaxdl/PyTorch (above 1: jaxdl is faster).
Then a `fit` epoch against the bare step rate, and a float32 matmul as the machine's ceiling. Every process
keeps freed host memory as `jaxdl train` does (`jaxdl.util.host_memory`; the PyTorch child too, so all three
run on the same allocator settings); ``--default-malloc`` leaves glibc's defaults.

Run: ``python -m benchmarks.run [--workloads mlp,lenet5,...] [--steps 20] [--blocks 5] [--json out.json]``.
PyTorch is the ``bench`` extra (``pip install -e ".[bench]"``); without it the PyTorch column is skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.workloads import WORKLOADS, Workload, flax_step, jaxdl_step, torch_batch, torch_step
from jaxdl.util.host_memory import keep_freed_host_memory

BATCHES = 4  # distinct batches cycled through, resident on the device before timing


def _time_jax(steps_and_states: dict[str, tuple[Callable, Any]], batches: list, steps: int,
              blocks: int) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Time each ``name: (step, state)``: its first call (compilation included), then ``blocks`` blocks of
    ``steps`` steps after a warm-up; the implementations' blocks are interleaved, so a slow spell of the
    machine (another process, frequency changes) falls on all of them instead of on whichever ran then.
    Returns the timings and each implementation's last state (the steps donate the states they are given)."""
    results, states = {}, {}
    for name, (step, state) in steps_and_states.items():
        start = time.perf_counter()
        state, out = step(state, batches[0])
        jax.block_until_ready(out)
        results[name] = {"first_step_s": time.perf_counter() - start}
        for i in range(3):  # warm-up: caches, allocator
            state, out = step(state, batches[i % len(batches)])
        jax.block_until_ready(out)
        states[name] = state
    times: dict[str, list[float]] = {name: [] for name in steps_and_states}
    for _ in range(blocks):
        for name, (step, _) in steps_and_states.items():
            state = states[name]
            start = time.perf_counter()
            for i in range(steps):
                state, out = step(state, batches[i % len(batches)])
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / steps)
            states[name] = state
    for name in steps_and_states:
        results[name]["ms"] = 1e3 * statistics.median(times[name])
    return results, states


def _time_torch(step: Callable, batches: list, steps: int, blocks: int) -> dict[str, float]:
    start = time.perf_counter()
    step(batches[0])
    first = time.perf_counter() - start
    for i in range(3):
        step(batches[i % len(batches)])
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for i in range(steps):
            loss = step(batches[i % len(batches)])
        loss.item()
        times.append((time.perf_counter() - start) / steps)
    return {"first_step_s": first, "ms": 1e3 * statistics.median(times)}


def time_torch_workload(name: str, steps: int, blocks: int) -> dict[str, float] | None:
    """The PyTorch column of one workload (None without torch): what `_torch_in_own_process` runs."""
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        torch_train, _ = torch_step(WORKLOADS[name])
    except ImportError:
        return None
    return _time_torch(torch_train, [torch_batch(WORKLOADS[name], i) for i in range(BATCHES)], steps, blocks)


def _torch_in_own_process(workload: Workload, steps: int, blocks: int, keep_memory: bool) -> dict[str, float] | None:
    """Time PyTorch in a child process. PyTorch and jaxdl's oneDNN kernels load the same GNU OpenMP runtime;
    in one process their two thread teams exceed the cores, and OpenMP then cuts every team's spin-wait
    short for the rest of the process (measured: jaxdl's LSTM step 120 -> 180 ms once PyTorch had run)."""
    name = next(key for key, value in WORKLOADS.items() if value is workload)
    code = ("import json, sys; from benchmarks.run import time_torch_workload; "
            "from jaxdl.util.host_memory import keep_freed_host_memory; "
            + ("keep_freed_host_memory(); " if keep_memory else "")
            + f"print(json.dumps(time_torch_workload({name!r}, {steps}, {blocks})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def step_flops(step: Callable, state: Any, batch: Any) -> float:
    """XLA's flop count of one compiled ``step(state, batch)`` (0 where the backend gives none)."""
    analysis = step.lower(state, batch).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float((analysis or {}).get("flops", 0.0))


def measure(workload: Workload, steps: int, blocks: int, with_torch: bool, keep_memory: bool = True) -> dict[str, Any]:
    """Time the three implementations of ``workload`` (PyTorch's child process keeping freed host memory when
    ``keep_memory``, as this process does); returns one row of the results table."""
    row: dict[str, Any] = {"workload": workload.name, "batch": workload.batch_size}
    batches = [jax.device_put({k: jnp.asarray(v) for k, v in workload.batch(i).items()}) for i in range(BATCHES)]
    flax, flax_state = flax_step(workload)
    row["flops"] = workload.train_flops or step_flops(flax, flax_state, batches[0])
    # A fresh jit: its first call below is timed with compilation.
    row.update(_time_jax({"flax": flax_step(workload), "jaxdl": jaxdl_step(workload)}, batches, steps, blocks)[0])
    if with_torch:
        row["torch"] = _torch_in_own_process(workload, steps, blocks, keep_memory)
    for name in ("jaxdl", "flax", "torch"):
        if row.get(name):
            row[name]["examples_per_s"] = workload.batch_size / row[name]["ms"] * 1e3
            row[name]["gflops"] = row["flops"] / row[name]["ms"] / 1e6
    row["jaxdl_vs_flax"] = row["flax"]["ms"] / row["jaxdl"]["ms"]
    row["jaxdl_vs_torch"] = row["torch"]["ms"] / row["jaxdl"]["ms"] if row.get("torch") else None
    return row


def fit_vs_step(workload: Workload, steps: int) -> dict[str, float]:
    """One `fit` epoch of ``steps`` batches (shuffling, batching, placing, logging every 50 steps) against the
    same compiled step run on batches already on the device."""
    from jaxdl.data.pipeline import ArrayDataset
    from jaxdl.training.loop import fit

    data = [workload.batch(i) for i in range(steps)]
    dataset = ArrayDataset(np.concatenate([b["x"] for b in data]), np.concatenate([b["y"] for b in data]))
    step, state = jaxdl_step(workload)
    batches = [jax.device_put({k: jnp.asarray(v) for k, v in b.items()}) for b in data[:BATCHES]]
    timings, states = _time_jax({"bare": (step, state)}, batches, steps, 3)
    bare, state = timings["bare"], states["bare"]
    fit(state, train_step=step, eval_step=None, train_data=dataset, batch_size=workload.batch_size, num_epochs=1,
        progress=False)  # compiled already; this call warms the input pipeline
    _, state = jaxdl_step(workload)
    start = time.perf_counter()
    result = fit(state, train_step=step, eval_step=None, train_data=dataset, batch_size=workload.batch_size,
                 num_epochs=1, progress=False)
    jax.block_until_ready(result.state.params)
    fit_ms = 1e3 * (time.perf_counter() - start) / steps
    return {"workload": workload.name, "bare_ms": bare["ms"], "fit_ms": fit_ms, "fit_vs_step": bare["ms"] / fit_ms}


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """float32 ``n x n`` matmul rate: the ceiling for dense layers on this machine."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a)
    jax.block_until_ready(out)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind)}
    import flax
    import optax

    info.update(flax=flax.__version__, optax=optax.__version__)
    try:  # torch itself is imported only by the child processes that time it
        info["torch"], info["torch_threads"] = importlib.metadata.version("torch"), os.cpu_count() or 1
    except importlib.metadata.PackageNotFoundError:
        info["torch"] = None
    return info


def _fmt(row: dict[str, Any], name: str) -> str:
    r = row.get(name)
    return f"{r['ms']:9.2f} {r['examples_per_s']:9.0f} {r['gflops']:7.1f}" if r else f"{'-':>9s} {'-':>9s} {'-':>7s}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The results as a fixed-width table (ms/step, examples/s, GFLOP/s per implementation, then ratios)."""
    print(f"{'':<62s} {'jaxdl':^27s} | {'hand-written flax':^27s} | {'pytorch eager':^27s} | {'jaxdl speed':^16s}")
    cells = f"{'ms/step':>9s} {'ex/s':>9s} {'GFLOP/s':>7s}"
    print(f"{'workload':<62s} {cells} | {cells} | {cells} | {'vs flax':>7s} {'vs torch':>8s} {'first step s (jaxdl/flax)':>26s}")
    for row in rows:
        vs_torch = f"{row['jaxdl_vs_torch']:7.2f}x" if row.get("jaxdl_vs_torch") else f"{'-':>8s}"
        print(f"{row['workload']:<62s} {_fmt(row, 'jaxdl')} | {_fmt(row, 'flax')} | {_fmt(row, 'torch')} | "
              f"{row['jaxdl_vs_flax']:6.2f}x {vs_torch} {row['jaxdl']['first_step_s']:10.1f} / {row['flax']['first_step_s']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, from {list(WORKLOADS)}")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks; the median is reported")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--fit-steps", type=int, default=100, help="batches in the fit-vs-step epoch (0: skip)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (by default freed host memory is kept, as jaxdl train does)")
    args = parser.parse_args()
    kept = not args.default_malloc and keep_freed_host_memory()
    names = args.workloads.split(",")
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; valid ones are {list(WORKLOADS)}")
    info = machine()
    info["host_memory"] = "kept" if kept else "malloc default"
    if not args.no_torch and info["torch"] is None:
        print("PyTorch is not installed (pip install -e '.[bench]'): its column is skipped")
    print(f"# benchmarks.run {time.strftime('%Y-%m-%d')}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    info["matmul_gflops"] = matmul_gflops()
    print(f"# float32 2048x2048 matmul: {info['matmul_gflops']:.0f} GFLOP/s")
    rows = []
    for name in names:
        rows.append(measure(WORKLOADS[name], args.steps, args.blocks, not args.no_torch, kept))
        print(f"# measured {name}", flush=True)
    print_table(rows)
    fit_row = None
    if args.fit_steps:
        fit_row = fit_vs_step(WORKLOADS["lenet5"], args.fit_steps)
        print(f"fit epoch vs bare step ({fit_row['workload']}, {args.fit_steps} steps): {fit_row['fit_ms']:.2f} vs "
              f"{fit_row['bare_ms']:.2f} ms/step = {fit_row['fit_vs_step']:.2f}x of the bare step rate")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows, "fit": fit_row}, f, indent=1)


if __name__ == "__main__":
    main()
