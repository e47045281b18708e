"""Choose the fastest of several equivalent lowerings of an operation by timing them on this machine.

Which lowering of a convolution XLA:CPU runs fastest depends on the CPU: on a 2-core AVX2 EPYC the patches
lowering trained ResNet-20 1.3x faster than XLA's own convolution, on a 2-core AVX-512 Xeon 0.78x as fast
(benchmarks/RESULTS.md). No fixed rule is right on both, so the ``"auto"`` implementations of
`jaxdl.nn.conv` measure, as cuDNN's autotuner does on GPUs: the first time a shape is traced, each candidate's
forward and backward pass (what a training step runs) is compiled and timed on the default CPU device, and
the fastest is kept. The choice is cached for the process and on disk (``$JAXDL_CACHE/autotune``, else
``~/.cache/jaxdl/autotune``), one file per machine (CPU model, core count, jax version), so a shape is measured
once per machine. All candidates compute the same values up to float summation order (tests pin each one to
XLA's own operation). ``JAXDL_AUTOTUNE=0`` turns measuring off: the caller's fixed rule decides instead, the
same on every run (the test suite does this).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import statistics
import tempfile
import threading
import time
import warnings
from typing import Callable, Hashable, Mapping, Sequence

import jax
import numpy as np

_MEMORY: dict[str, str] = {}
_LOCK = threading.Lock()
# Ties go to the caller's fixed rule: a choice that flips between runs on noise would change float rounding
# from one run to the next for no speed.
_TIE = 0.05
# Problems this small (a model's init on one example, say) take the default: measuring them costs more
# compile time than their choice could save.
_MIN_VALUES = 1 << 15


def enabled() -> bool:
    """Whether ``"auto"`` lowerings are measured: on the CPU backend unless ``JAXDL_AUTOTUNE`` is ``0``/``false``."""
    if os.environ.get("JAXDL_AUTOTUNE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return jax.default_backend() == "cpu"


def cache_file() -> pathlib.Path:
    """This machine's on-disk cache of choices: one JSON file per CPU model, core count and jax version."""
    base = (pathlib.Path(os.environ["JAXDL_CACHE"]) if os.environ.get("JAXDL_CACHE")
            else pathlib.Path.home() / ".cache" / "jaxdl")
    machine = json.dumps(_machine(), sort_keys=True)
    return base / "autotune" / f"{hashlib.sha1(machine.encode()).hexdigest()[:16]}.json"


def _machine() -> dict[str, str]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "arch": platform.machine(), "cores": str(os.cpu_count()), "jax": jax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _load(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data["choices"] if isinstance(data.get("choices"), dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as error:
        warnings.warn(f"ignoring the unreadable autotune cache {path} ({error}); it will be rewritten", stacklevel=3)
        return {}


def _store(path: pathlib.Path, key: str, record: dict) -> None:
    """Add one choice to the cache file, written whole to a temporary file and renamed (never half-written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        choices = _load(path)
        choices[key] = record
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump({"machine": _machine(), "choices": choices}, handle, indent=1, sort_keys=True)
        os.replace(handle.name, path)
    except OSError as error:  # a read-only home must not stop training: the choice still holds for this process
        warnings.warn(f"could not write the autotune cache {path}: {error}", stacklevel=3)


def _train_ms(fn: Callable[..., jax.Array], structs: Sequence[jax.ShapeDtypeStruct]) -> float:
    """Median ms of ``fn``'s forward pass plus its vector-Jacobian product for every argument."""
    def train(*args):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(y)

    compiled = jax.jit(train).lower(*structs).compile()
    rng = np.random.default_rng(0)
    return median_ms(compiled, *[jax.device_put(rng.standard_normal(s.shape).astype(s.dtype)) for s in structs])


def median_ms(fn: Callable[..., object], *args: object, calls: int | None = None, blocks: int = 3) -> float:
    """Median over ``blocks`` blocks of the ms per call of ``fn(*args)``, after one untimed call (compilation).

    A block is ``calls`` calls and one wait for the device at its end; with ``calls=None`` it is as many calls
    as fit ~20 ms by a timed call (1 to 20), so fast operations are not timed one dispatch at a time.
    """
    jax.block_until_ready(fn(*args))
    if calls is None:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        calls = int(np.clip(0.02 / max(time.perf_counter() - start, 1e-6), 1, 20))
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def fastest(op: str, candidates: Mapping[str, Callable[..., jax.Array]], args: Sequence[jax.Array],
            params: Hashable, default: str) -> str:
    """The name of the fastest of ``candidates`` (functions of ``args`` computing the same values) on this machine.

    ``op`` and ``params`` (the static arguments: strides, padding, ...) with the shapes and dtypes of ``args``
    key the cache. ``default`` is the caller's fixed rule: returned when measuring is off (`enabled`), and kept
    unless another candidate is more than 5% faster; also for arguments of fewer than 32K values in all, whose
    choice cannot pay for its measuring. ``args`` may be tracers: only their shapes are used.
    """
    if default not in candidates:
        raise ValueError(f"autotune default {default!r} is not among the candidates {sorted(candidates)}")
    if not enabled() or sum(int(np.prod(a.shape)) for a in args) < _MIN_VALUES:
        return default
    structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    key = json.dumps([op, repr(params), [(s.shape, str(s.dtype)) for s in structs], sorted(candidates)])
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        path = cache_file()
        record = _load(path).get(key)
        if not (isinstance(record, dict) and record.get("choice") in candidates):
            # Measured eagerly even when called while tracing: the candidates are compiled on their own.
            with jax.ensure_compile_time_eval():
                ms = {name: _train_ms(fn, structs) for name, fn in candidates.items()}
            best = min(ms, key=ms.get)
            choice = best if ms[best] < (1 - _TIE) * ms[default] else default
            record = {"choice": choice, "train_ms": {name: round(t, 3) for name, t in ms.items()}}
            _store(path, key, record)
        _MEMORY[key] = record["choice"]
        return record["choice"]
