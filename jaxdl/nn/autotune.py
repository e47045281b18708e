"""Choose the fastest of several equivalent lowerings of an operation, for each use of it, by timing them here.

Which lowering of a convolution XLA:CPU runs fastest depends on the CPU: on a 2-core AVX2 EPYC the patches
lowering trained ResNet-20 1.3x faster than XLA's own convolution, on a 2-core AVX-512 Xeon 0.78x as fast
(benchmarks/RESULTS.md). It also depends on the pass: on the Xeon XLA's convolution runs forward and input
gradients fastest, while its kernel gradient is 3-4x slower than its forward, and a first layer needs no input
gradient at all. So the ``"auto"`` implementations of `jaxdl.nn.conv` measure, as cuDNN's autotuner does on
GPUs, and per use (`tuned`): an inference call runs the fastest forward pass; a differentiated call runs the
fastest combination of a forward lowering and one lowering per differentiated argument (`combine`), each
combination compiled and timed as a step runs it the first time a shape is traced. Choices are cached for the
process and on disk (``$JAXDL_CACHE/autotune``, else ``~/.cache/jaxdl/autotune``), one file per machine (CPU
model, core count, jax version), so a shape is measured once per machine. All candidates compute the same
values up to float summation order (tests pin each one to XLA's own operation). ``JAXDL_AUTOTUNE=0`` turns
measuring off: the caller's fixed rule decides instead, the same on every run (the test suite does this).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
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
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

_MEMORY: dict[str, tuple[str, ...]] = {}
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


def choices() -> dict[str, tuple[str, ...]]:
    """The choices `fastest` made or read in this process, by cache key (a JSON list: operation, parameters,
    argument shapes and dtypes, candidates, differentiated arguments): forward candidate first, then one per
    differentiated argument."""
    with _LOCK:
        return dict(_MEMORY)


def _combination_ms(candidates: Mapping[str, Callable[..., jax.Array]], combination: tuple[str, ...],
                    structs: Sequence[jax.ShapeDtypeStruct], wrt: tuple[int, ...]) -> float:
    """Median ms of what a step runs of one combination (forward candidate, then one per argument in ``wrt``):
    its forward pass and, with ``wrt``, its vector-Jacobian product for those arguments (the others are
    constants, as a network's input is to its first layer)."""
    fn = combine(candidates, combination[0], dict(zip(wrt, combination[1:])))

    def step(*args):
        if not wrt:
            return fn(*args)
        def of_wrt(*chosen):
            full = list(args)
            for i, value in zip(wrt, chosen):
                full[i] = value
            return fn(*full)
        y, vjp = jax.vjp(of_wrt, *[args[i] for i in wrt])
        return y, vjp(y)

    compiled = jax.jit(step).lower(*structs).compile()
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
            params: Hashable, default: str, wrt: Sequence[int] = ()) -> tuple[str, ...]:
    """The fastest way on this machine to run ``candidates`` (functions of ``args`` computing the same values,
    each linear in every argument) forward and, with ``wrt``, differentiate them with respect to those arguments.

    Returns the candidate for the forward pass, then one for the gradient of each argument in ``wrt``: every
    such combination (`combine`) is compiled and timed as a step runs it, and the fastest kept. ``op``,
    ``params`` (the static arguments: strides, padding, ...), ``wrt`` and the shapes and dtypes of ``args``
    key the cache. ``default`` is the caller's fixed rule: used throughout when measuring is off (`enabled`),
    and kept unless another combination is more than 5% faster; also for arguments of fewer than 32K values in
    all, whose choice cannot pay for its measuring. ``args`` may be tracers: only their shapes are used.
    """
    if default not in candidates:
        raise ValueError(f"autotune default {default!r} is not among the candidates {sorted(candidates)}")
    wrt = tuple(wrt)
    fixed = (default,) * (1 + len(wrt))
    if not enabled() or sum(int(np.prod(a.shape)) for a in args) < _MIN_VALUES:
        return fixed
    structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    key = json.dumps([op, repr(params), [(s.shape, str(s.dtype)) for s in structs], sorted(candidates), list(wrt)])
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        path = cache_file()
        record = _load(path).get(key)
        choice = record.get("choice") if isinstance(record, dict) else None
        # A record of the whole-step tuner of earlier versions (one name) is measured again.
        if not (isinstance(choice, list) and len(choice) == len(fixed) and all(c in candidates for c in choice)):
            combos = list(itertools.product(candidates, repeat=len(fixed)))
            # Measured eagerly even when called while tracing: the combinations are compiled on their own.
            with jax.ensure_compile_time_eval():
                ms = {combo: _combination_ms(candidates, combo, structs, wrt) for combo in combos}
            best = min(ms, key=ms.get)
            choice = list(best if ms[best] < (1 - _TIE) * ms[fixed] else fixed)
            record = {"choice": choice, "ms": {" ".join(combo): round(t, 3) for combo, t in ms.items()}}
            _store(path, key, record)
        _MEMORY[key] = tuple(choice)
        return _MEMORY[key]


def _forward_and_tangent(candidates, forward, gradients, primals, tangents):
    # The candidates are linear in each argument, so the derivative is the sum over arguments of the function
    # with that argument replaced by its tangent; each term may come from a different candidate.
    out = candidates[forward](*primals)
    terms = [candidates[gradients[i]](*primals[:i], tangent, *primals[i + 1:])
             for i, tangent in enumerate(tangents) if not isinstance(tangent, SymbolicZero)]
    return out, functools.reduce(operator.add, terms) if terms else jnp.zeros_like(out)


def combine(candidates: Mapping[str, Callable[..., jax.Array]], forward: str,
            gradients: Mapping[int, str]) -> Callable[..., jax.Array]:
    """One function that runs ``candidates[forward]`` and differentiates argument ``i`` through
    ``candidates[gradients[i]]`` (reverse mode transposes that candidate's linear map).

    The candidates must be linear in each argument separately (a convolution in its image and in its kernel):
    then the derivative along tangents ``(t_0, t_1, ...)`` is ``sum_i f(x_0, .., t_i, .., x_n)``. A
    `jax.custom_jvp`, so forward mode, reverse mode and higher derivatives all work; differentiating an
    argument missing from ``gradients`` is an error.
    """
    @jax.custom_jvp
    def combined(*args):
        return candidates[forward](*args)

    def jvp(primals, tangents):
        for i, tangent in enumerate(tangents):
            if not isinstance(tangent, SymbolicZero) and i not in gradients:
                raise ValueError(f"combine: argument {i} is differentiated, but no candidate was chosen for its "
                                 f"gradient (chosen for {sorted(gradients)})")
        return _forward_and_tangent(candidates, forward, gradients, primals, tangents)

    combined.defjvp(jvp, symbolic_zeros=True)
    return combined


def tuned(op: str, candidates: Mapping[str, Callable[..., jax.Array]], params: Hashable,
          default: str) -> Callable[..., jax.Array]:
    """``candidates`` (each linear in every argument) as one function that runs, on each call, the `fastest`
    combination for what is asked of it: the fastest forward pass when it is not differentiated (inference),
    and when it is, the fastest forward-and-gradient combination for exactly the arguments differentiated (a
    first layer's input, say, is not). With measuring off it is ``candidates[default]`` itself.
    """
    if not enabled():
        return candidates[default]

    @jax.custom_jvp
    def run(*args):
        (forward,) = fastest(op, candidates, args, params, default)
        return candidates[forward](*args)

    def jvp(primals, tangents):
        wrt = tuple(i for i, tangent in enumerate(tangents) if not isinstance(tangent, SymbolicZero))
        forward, *gradients = fastest(op, candidates, primals, params, default, wrt)
        return _forward_and_tangent(candidates, forward, dict(zip(wrt, gradients)), primals, tangents)

    run.defjvp(jvp, symbolic_zeros=True)
    return run
