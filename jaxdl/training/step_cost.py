"""What a train step costs and what the machine can do: the step's floating-point operations from XLA's cost
analysis, the devices' measured matmul rate (the denominator of an MFU-style utilisation) and their memory.

``step_flops`` reads XLA's analysis of the step's lowered program (global over a mesh, per device under
``pmap``, so it is scaled by the devices there): one lowering of a step already traced, no compile and no
device work. ``matmul_rate`` times float32 matrix products on one device once per machine and keeps the
result beside the autotuner's choices (`jaxdl.nn.lowering.cache`): a measured figure rather than a data-sheet
peak, so a utilisation of 0.5 reads "half of what this device does on a large matmul".
"""

from __future__ import annotations

import time
import warnings
import weakref
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.nn.lowering.cache import cache_file, load_choices, store_choices

_RATE_REPEATS = 5
# Each step's FLOP counts by the abstract shapes of its arguments: lowering and analysing a large step takes a
# noticeable fraction of a second, and `fit` asks again each time the same compiled step trains (folds, stages).
_FLOPS: "weakref.WeakKeyDictionary[Any, dict[Any, float | None]]" = weakref.WeakKeyDictionary()


def _signature(tree: Any) -> Any:
    leaves, structure = jax.tree.flatten(tree)
    return structure, tuple((getattr(a, "shape", None), str(getattr(a, "dtype", type(a).__name__)),
                             getattr(a, "sharding", None)) for a in leaves)


def step_flops(train_step: Callable, state: Any, batch: Any, devices: int = 1) -> float | None:
    """Floating-point operations of one ``train_step(state, batch)`` over all its devices, from XLA's cost
    analysis of its lowered program; ``devices`` multiplies a per-device (``pmap``) program. None when the
    step cannot be lowered (a plain Python function) or the backend reports no count. Counted once per step
    and argument shapes."""
    lower = getattr(train_step, "lower", None)
    if lower is None:
        return None
    try:
        known = _FLOPS.setdefault(train_step, {})
    except TypeError:  # not weakly referable: analysed each time
        known = {}
    key = (_signature((state, batch)), devices)
    if key not in known:
        known[key] = _analysed_flops(lower, state, batch, devices)
    return known[key]


def _analysed_flops(lower: Callable, state: Any, batch: Any, devices: int) -> float | None:
    try:
        analysis = lower(state, batch).cost_analysis()
    except Exception as error:  # noqa: BLE001 - an estimate for a log line must never stop a run
        warnings.warn(f"no FLOP count for the train step ({type(error).__name__}: {error})", stacklevel=2)
        return None
    if isinstance(analysis, Sequence) and not isinstance(analysis, dict):  # older jax: one dict per program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) * devices if flops and flops > 0 else None


def matmul_rate(device: jax.Device | None = None, size: int | None = None) -> float:
    """Floating-point operations per second one ``device`` (default: the first) reaches on a float32
    ``size x size`` matmul (1024 on CPUs, 4096 on accelerators): the best of a few timed runs, measured once
    per machine and device kind and read from the cache afterwards."""
    device = device or jax.local_devices()[0]
    size = size or (1024 if device.platform == "cpu" else 4096)
    key = f"matmul_rate/{device.platform}/{device.device_kind}/{size}"
    path = cache_file()
    cached = load_choices(path).get(key)
    if isinstance(cached, dict) and isinstance(cached.get("flops_per_second"), (int, float)) \
            and cached["flops_per_second"] > 0:
        return float(cached["flops_per_second"])
    a = jax.device_put(jnp.ones((size, size), jnp.float32), device)
    product = jax.jit(lambda m: m @ m)
    product(a).block_until_ready()  # compiles
    best = float("inf")
    for _ in range(_RATE_REPEATS):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    rate = 2.0 * size ** 3 / max(best, 1e-9)
    store_choices(path, {key: {"flops_per_second": rate}})
    return rate


def device_memory(devices: Sequence[jax.Device]) -> dict[str, int] | None:
    """``device_memory_bytes`` and ``peak_device_memory_bytes``: the largest in use and peak over ``devices``,
    where the backend reports them (GPUs and TPUs do; XLA:CPU does not: None)."""
    in_use, peak = [], []
    for device in devices:
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "bytes_in_use" in stats:
            in_use.append(int(stats["bytes_in_use"]))
            peak.append(int(stats.get("peak_bytes_in_use", stats["bytes_in_use"])))
    if not in_use:
        return None
    return {"device_memory_bytes": max(in_use), "peak_device_memory_bytes": max(peak)}
