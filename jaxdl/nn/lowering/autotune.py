"""Choose the fastest of several equivalent lowerings of an operation, for each use of it, by timing them here.

Which lowering of a convolution XLA:CPU runs fastest depends on the CPU: on a 2-core AVX2 EPYC the patches
lowering trained ResNet-20 1.3x faster than XLA's own convolution, on a 2-core AVX-512 Xeon 0.78x as fast
(benchmarks/RESULTS.md). It also depends on the pass: on the Xeon XLA's convolution runs forward and input
gradients fastest, while its kernel gradient is 3-4x slower than its forward, and a first layer needs no input
gradient at all. So ``"auto"`` lowerings measure, as cuDNN's autotuner does on GPUs, and per use: an
inference call runs the fastest forward pass; a differentiated call runs the fastest combination of a forward
lowering and one lowering per differentiated argument (`combine`).

Measuring happens *before* a step is traced, never while: `tune` traces the step abstractly, collecting
every use a trace asks about, then compiles and times each combination and records the choices; the real
trace only reads them (a use nobody measured takes the caller's fixed rule). In a multi-process run process
0 measures and every process takes its choices, so all hosts compile the same program. Choices are kept for
the process and on disk (``$JAXDL_CACHE/autotune``, else ``~/.cache/jaxdl/autotune``), one file per machine
(CPU model, core count, jax version), so a shape is measured once per machine; a run that measures says so
on stderr. All candidates compute the same values up to float summation order (tests pin each one to XLA's
own operation).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import itertools
import json
import pathlib
import statistics
import sys
import threading
import time
from typing import Callable, Hashable, Mapping, Sequence

import jax
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxdl.nn.lowering.cache import cache_file, load_choices, store_choices
from jaxdl.nn.lowering.combine import combine, forward_and_tangent
from jaxdl.nn.lowering.settings import current

_MEMORY: dict[str, tuple[str, ...]] = {}
_LOCK = threading.Lock()
# Ties go to the caller's fixed rule: a choice that flips between runs on noise would change float rounding
# from one run to the next for no speed.
_TIE = 0.05
# Problems this small (a model's init on one example, say) take the default: measuring them costs more
# compile time than their choice could save.
_MIN_VALUES = 1 << 15


def enabled() -> bool:
    """Whether ``"auto"`` lowerings may be measured here: lowering mode ``"auto"`` with measuring on, on a CPU."""
    settings = current()
    return settings.mode == "auto" and settings.measure and jax.default_backend() == "cpu"


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


@dataclasses.dataclass(frozen=True)
class _Request:
    """One use a trace asked about: what `_measure` needs to time its combinations."""

    candidates: Mapping[str, Callable[..., jax.Array]]
    structs: tuple[jax.ShapeDtypeStruct, ...]
    wrt: tuple[int, ...]
    fixed: tuple[str, ...]


# The uses asked about while `tune` traces a step abstractly; None outside `tune`.
_RECORDING: contextvars.ContextVar[dict[str, _Request] | None] = contextvars.ContextVar("jaxdl_autotune_recording",
                                                                                        default=None)
_DISK: dict[str, dict] = {}  # this machine's cache file, read once per process


def _disk_choice(key: str, candidates: Mapping[str, Callable], length: int) -> tuple[str, ...] | None:
    path = str(cache_file())
    if path not in _DISK:
        _DISK[path] = load_choices(pathlib.Path(path))
    record = _DISK[path].get(key)
    choice = record.get("choice") if isinstance(record, dict) else None
    # A record of the whole-step tuner of earlier versions (one name) is measured again.
    if isinstance(choice, list) and len(choice) == length and all(c in candidates for c in choice):
        return tuple(choice)
    return None


def fastest(op: str, candidates: Mapping[str, Callable[..., jax.Array]], args: Sequence[jax.Array],
            params: Hashable, default: str, wrt: Sequence[int] = ()) -> tuple[str, ...]:
    """The lowering to run for one use of ``candidates`` (functions of ``args`` computing the same values, each
    linear in every argument): forward and, with ``wrt``, differentiated with respect to those arguments.

    Returns the candidate for the forward pass, then one for the gradient of each argument in ``wrt``: the
    choice `tune` measured for this use (``op``, ``params``, ``wrt`` and the shapes and dtypes of ``args`` key
    it), else ``default``, the caller's fixed rule, throughout; uses of fewer than 32K values in all always take
    it (their choice cannot pay for its measuring). Never measures: while `tune` traces, the use is recorded
    for it to measure. ``args`` may be tracers: only their shapes are used.
    """
    if default not in candidates:
        raise ValueError(f"autotune default {default!r} is not among the candidates {sorted(candidates)}")
    wrt = tuple(wrt)
    fixed = (default,) * (1 + len(wrt))
    if not enabled() or not all(isinstance(d, int) for a in args for d in a.shape):
        return fixed  # a symbolic batch (jax.export, ONNX) has no measured choice: the fixed rule serves any size
    if sum(int(np.prod(a.shape)) for a in args) < _MIN_VALUES:
        return fixed
    structs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args)
    key = json.dumps([op, repr(params), [(s.shape, str(s.dtype)) for s in structs], sorted(candidates), list(wrt)])
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        # Many processes follow process 0's measurements (`tune`), never their own disks: one program for all.
        choice = _disk_choice(key, candidates, len(fixed)) if jax.process_count() == 1 else None
        if choice is not None:
            _MEMORY[key] = choice
            return choice
    recording = _RECORDING.get()
    if recording is not None:
        recording.setdefault(key, _Request(candidates, structs, wrt, fixed))
    return fixed


# Up to this many combinations are all measured; beyond, a coordinate sweep measures a few of them.
_EXHAUSTIVE = 8


def _measure(request: _Request) -> tuple[tuple[str, ...], dict]:
    """Compile and time the combinations of one use; the fastest unless the fixed rule is within 5%.

    With few combinations (two candidates, three passes: 8) every one is timed. With more (three candidates
    and three passes are 27 compilations) a pass's cost hardly depends on which candidates run the other
    passes, so a coordinate sweep finds the fastest: time the fixed rule and each candidate for all passes,
    then, pass by pass, each candidate for that pass with the best so far elsewhere (at most 9 of the 27).
    """
    names, positions = list(request.candidates), len(request.fixed)
    ms: dict[tuple[str, ...], float] = {}

    def timed(combo: tuple[str, ...]) -> None:
        if combo not in ms:
            ms[combo] = _combination_ms(request.candidates, combo, request.structs, request.wrt)

    if len(names) ** positions <= _EXHAUSTIVE:
        for combo in itertools.product(names, repeat=positions):
            timed(combo)
    else:
        for combo in [request.fixed] + [(name,) * positions for name in names]:
            timed(combo)
        for position in range(positions):
            best = min(ms, key=ms.get)
            for name in names:
                timed(best[:position] + (name,) + best[position + 1:])
    best = min(ms, key=ms.get)
    choice = best if ms[best] < (1 - _TIE) * ms[request.fixed] else request.fixed
    return tuple(choice), {"choice": list(choice), "ms": {" ".join(combo): round(t, 3) for combo, t in ms.items()}}


def _from_process_zero(measured: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Process 0's choices on every process (a JSON payload broadcast as bytes)."""
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps(measured).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
    buffer = np.zeros(size, np.uint8)
    buffer[:payload.size] = payload
    shared = np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes().decode()
    return {key: tuple(choice) for key, choice in json.loads(shared).items()}


def tune(fn: Callable[..., object], *args: object, axis_name: str | None = None) -> dict[str, tuple[str, ...]]:
    """Measure, before ``fn`` is traced for real, every ``"auto"`` use it makes on these ``args`` that this
    machine has not measured yet, so that its trace finds each use's fastest lowering; returns the new choices.

    ``fn`` must not be ``jax.jit``-wrapped: its trace here, made before the choices exist, would be cached
    and reused by the real one. It is traced abstractly once (nothing runs); ``axis_name`` is the ``pmap`` axis
    of a step whose arguments carry a leading device axis (traced per device, as ``pmap`` will). Does nothing
    unless `enabled`.
    A first run prints one line to stderr before measuring (how many uses, where the choices are kept) and
    one after (how long it took).
    """
    if not enabled():
        return {}
    recording: dict[str, _Request] = {}
    token = _RECORDING.set(recording)
    try:
        traced = functools.partial(fn)  # a fresh callable: no cached trace of ``fn`` is reused, none is left behind
        jax.eval_shape(jax.vmap(traced, axis_name=axis_name) if axis_name else traced, *args)
    finally:
        _RECORDING.reset(token)
    with _LOCK:
        pending = {key: request for key, request in recording.items() if key not in _MEMORY}
    if not pending:
        return {}
    measured: dict[str, tuple[str, ...]] = {}
    if jax.process_index() == 0:
        with _LOCK:  # what this machine measured before (only process 0's disk counts in a multi-process run)
            for key, request in pending.items():
                cached = _disk_choice(key, request.candidates, len(request.fixed))
                if cached is not None:
                    measured[key] = cached
        to_measure = {key: request for key, request in pending.items() if key not in measured}
        if to_measure:
            path = cache_file()
            sys.stderr.write(f"jaxdl: timing the lowerings of {len(to_measure)} convolution use(s) on this CPU before "
                             f"compiling (once per machine, kept in {path}; jaxdl.nn.lowering.configure(measure=False) "
                             "skips it)\n")
            start = time.perf_counter()
            records = {}
            for key, request in to_measure.items():
                measured[key], records[key] = _measure(request)
            store_choices(path, records)
            _DISK.pop(str(path), None)
            sys.stderr.write(f"jaxdl: timed {len(to_measure)} use(s) in {time.perf_counter() - start:.1f} s\n")
    if jax.process_count() > 1:
        measured = _from_process_zero(measured)
    with _LOCK:
        _MEMORY.update(measured)
    return measured


def tuned(op: str, candidates: Mapping[str, Callable[..., jax.Array]], params: Hashable,
          default: str) -> Callable[..., jax.Array]:
    """``candidates`` (each linear in every argument) as one function that runs, on each call, the `fastest`
    combination for what is asked of it: the fastest forward pass when it is not differentiated (inference),
    and when it is, the fastest forward-and-gradient combination for exactly the arguments differentiated (a
    first layer's input, say, is not), as `tune` measured it. With measuring off it is ``candidates[default]``.
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
        return forward_and_tangent(candidates, forward, dict(zip(wrt, gradients)), primals, tangents)

    run.defjvp(jvp, symbolic_zeros=True)
    return run
