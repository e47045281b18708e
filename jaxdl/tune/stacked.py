"""Training many models at once: states stacked on a leading "trial" axis, one `jax.vmap`-ed step.

Trials that share shapes (k-fold folds, hyperparameter trials that differ only in values kept in the
optimizer state, ensemble members that differ only in their seed) train as one compiled program: each step
updates every trial. On a device with spare parallelism this is far faster than running them one after
another, and it is the same arithmetic. `fit_stacked(..., vmap=False)` runs the same trials one at a time
with the unvmapped step: the reference the tests compare against, and the fallback when shapes differ.

Data is either shared (every trial sees the same batch: a search) or per trial (a leading trial axis on
every batch leaf: k-fold, where each fold trains on its own examples).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.prefetch import prefetch
from jaxdl.metrics import Metrics
from jaxdl.nn import lowering
from jaxdl.training.loop import MAX_STEPS_IN_FLIGHT
from jaxdl.training.state import TrainState

Batch = dict[str, Any]
BatchesFn = Callable[[int], Iterator[Batch]]  # epoch -> batches
EvalBatchesFn = Callable[[], Iterator[Batch]]


def stack(trees: Sequence[Any]) -> Any:
    """Stack pytrees of one structure on a new leading axis (``[trials, ...]`` leaves)."""
    if not trees:
        raise ValueError("nothing to stack: give at least one state")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
    """Trial ``index`` of a stacked pytree."""
    return jax.tree.map(lambda a: a[index], tree)


def num_trials(tree: Any) -> int:
    """The length of a stacked pytree's leading axis."""
    return int(jax.tree.leaves(tree)[0].shape[0])


@dataclasses.dataclass
class StackedResult:
    """``states`` stacked ``[trials, ...]``, and per epoch and trial the train and validation metrics."""

    states: TrainState
    history: list[list[dict[str, float]]]  # history[epoch][trial] = {"train_loss": ..., "val_accuracy": ...}
    schedule: str = "vmap"  # how the trials were stepped: "vmap" or "sequential"
    step_ms: dict[str, float] | None = None  # with schedule="auto": the measured ms a step of all trials, per schedule

    def final(self, key: str) -> np.ndarray:
        """``key`` (e.g. ``"val_accuracy"``) after the last epoch, one value per trial."""
        return np.array([row.get(key, math.nan) for row in self.history[-1]])

    def best(self, key: str, mode: str = "max") -> np.ndarray:
        """The best ``key`` over epochs, per trial (NaN epochs ignored; NaN if every epoch is NaN)."""
        values = np.array([[row.get(key, math.nan) for row in epoch] for epoch in self.history])
        with warnings.catch_warnings():  # an all-NaN trial (diverged from the start) stays NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanmax if mode == "max" else np.nanmin)(values, axis=0)


def _sum_metrics(total: Metrics | None, new: Metrics) -> Metrics:
    return new if total is None else total.merge(new)


_sum_metrics_jit = jax.jit(_sum_metrics)


def _per_trial(metrics: Metrics, prefix: str) -> list[dict[str, float]]:
    host = jax.device_get(metrics)
    return [{f"{prefix}{k}": float(v) for k, v in unstack(host, t).compute().items() if np.ndim(v) == 0}
            for t in range(num_trials(host))]


def _epochs(states, step, evaluate, batches, validation, num_epochs, select) -> StackedResult:
    """The epoch loop shared by both modes: ``select(batch)`` picks what the (vmapped or single) step sees."""
    history = []
    for epoch in range(1, num_epochs + 1):
        train_sums, in_flight = None, []
        for batch in prefetch(map(select, batches(epoch)), jax.device_put):
            states, metrics = step(states, batch)
            train_sums = _sum_metrics_jit(train_sums, metrics)
            in_flight.append(metrics)
            if len(in_flight) > MAX_STEPS_IN_FLIGHT:
                jax.block_until_ready(in_flight.pop(0))
        if train_sums is None:
            raise ValueError("an epoch produced no training batches: the batch size exceeds a trial's data")
        rows = _per_trial(train_sums, "train_")
        if validation is not None:
            val_sums = None
            for batch in prefetch(map(select, validation()), jax.device_put):
                val_sums = _sum_metrics_jit(val_sums, evaluate(states, batch))
            for row, val in zip(rows, _per_trial(val_sums, "val_")):
                row.update(val)
        history.append(rows)
    return StackedResult(states, history)


SCHEDULES = ("auto", "vmap", "sequential")
RUN_SCHEDULES = ("vmap", "sequential")  # what "auto" resolves to
# Sequential must beat the one vmapped program by this much: vmap also reads each batch once and dispatches once,
# which a measurement of the steps alone does not see.
_SEQUENTIAL_MARGIN = 0.9
_TIMING_SECONDS, _TIMING_MAX_STEPS = 0.1, 10


def fit_stacked(
    states: TrainState,
    train_step: Callable,
    eval_step: Callable,
    batches: BatchesFn,
    num_epochs: int,
    validation: EvalBatchesFn | None = None,
    per_trial_data: bool = False,
    schedule: str = "auto",
) -> StackedResult:
    """Train stacked ``states`` (``[trials, ...]``) for ``num_epochs`` with the pure, uncompiled steps.

    ``batches(epoch)`` yields the epoch's training batches and ``validation()`` the evaluation batches;
    with ``per_trial_data`` every leaf has a leading trial axis (trial ``t`` sees ``leaf[t]``), otherwise
    all trials see the same batch. ``schedule="vmap"`` steps every trial in one compiled program;
    ``"sequential"`` trains each trial alone, one after another, with the same batches: the same numbers to
    float32 rounding. ``"auto"`` (the default) times both on the first batch and runs the faster; it holds one
    more copy of the stacked states while it measures, so force a schedule where memory is tight.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    trials = num_trials(states)
    _tune_lowerings(train_step, eval_step, states, batches, validation, per_trial_data)
    vmapped_step = jax.jit(over_trials(train_step, trials, per_trial_data), donate_argnums=0)
    # A trial axis of one on the metrics (inside the compiled step) lets a lone trial reuse the stacked bookkeeping.
    single_step = jax.jit(lambda s, b: _expand(train_step(s, b)), donate_argnums=0)
    step_ms = None
    if schedule == "auto":
        step_ms = measure_schedules(states, vmapped_step, single_step, batches, per_trial_data)
        schedule = choose_schedule(step_ms)
    if schedule == "vmap":
        evaluate = jax.jit(over_trials(eval_step, trials, per_trial_data))
        result = _epochs(states, vmapped_step, evaluate, batches, validation, num_epochs, lambda b: b)
        return dataclasses.replace(result, schedule=schedule, step_ms=step_ms)
    evaluate = jax.jit(lambda s, b: _expand(eval_step(s, b)))
    results = [_epochs(unstack(states, t), single_step, evaluate, batches, validation, num_epochs,
                       _trial_data(t, per_trial_data)) for t in range(trials)]
    history = [[r.history[e][0] for r in results] for e in range(num_epochs)]
    return StackedResult(stack([r.states for r in results]), history, schedule, step_ms)


def _tune_lowerings(train_step: Callable, eval_step: Callable, states: Any, batches: Callable,
                    validation: Callable | None, per_trial_data: bool) -> None:
    """Tune one trial's steps' convolution lowerings on the first batches before anything is traced (the
    vmapped program traces the same per-trial uses)."""
    for step, make in ((train_step, lambda: batches(1)), (eval_step, validation or (lambda: iter(())))):
        first = next(iter(make()), None)
        if first is not None:
            lowering.tune(step, unstack(states, 0), _trial_data(0, per_trial_data)(first))


def choose_schedule(step_ms: dict[str, float]) -> str:
    """``"sequential"`` when its measured step time beats vmap's by more than the margin, else ``"vmap"``."""
    return "sequential" if step_ms["sequential"] < _SEQUENTIAL_MARGIN * step_ms["vmap"] else "vmap"


def over_trials(fn: Callable, trials: int, per_trial_data: bool) -> Callable:
    """``fn(state, batch)`` vmapped over stacked states; a shared batch is first broadcast to every trial.

    Why broadcast: given an unbatched input, vmap merges the trials' first layers into one wide matmul
    ``x @ [W_1 .. W_T]``, whose weight gradient XLA:CPU computes as ``[T*out, in]`` and transposes back inside
    the optimizer update (MLP 512x512, 8 trials: ~21 ms a step). With the batch broadcast, every layer is a
    batched matmul in the parameters' own ``[T, in, out]`` layout (~18 ms); the copy of the input costs little
    next to the ``T`` sets of activations the step holds anyway.
    """
    if per_trial_data:
        return jax.vmap(fn)

    def shared(states, batch):
        batch = jax.tree.map(lambda a: jnp.broadcast_to(a, (trials, *jnp.shape(a))), batch)
        return jax.vmap(fn)(states, batch)

    return shared


def _trial_data(trial: int, per_trial_data: bool) -> Callable[[Batch], Batch]:
    if per_trial_data:
        return lambda batch: jax.tree.map(lambda a: a[trial], batch)
    return lambda batch: batch


def measure_schedules(states: TrainState, vmapped_step: Callable, single_step: Callable, batches: BatchesFn,
                      per_trial_data: bool) -> dict[str, float]:
    """Milliseconds a step of all trials takes vmapped and one after another, timed on the first batch.

    Both compiled steps run on copies (they donate their input), after a first call that compiles them;
    the sequential time is one trial's step times the number of trials. An epoch without batches measures
    nothing (``inf`` for both) and leaves the error to the training loop.
    """
    first = next(iter(batches(1)), None)
    if first is None:
        return {"vmap": math.inf, "sequential": math.inf}
    first = jax.device_put(first)
    trials = num_trials(states)
    vmap_ms = _ms_per_step(vmapped_step, jax.tree.map(jnp.copy, states), first)
    single_ms = _ms_per_step(single_step, unstack(states, 0), _trial_data(0, per_trial_data)(first))
    return {"vmap": vmap_ms, "sequential": trials * single_ms}


def _ms_per_step(step: Callable, state: Any, batch: Batch) -> float:
    # Not autotune.median_ms, which calls fn on the same arguments: a train step donates its state, so each
    # call takes the previous call's output.
    state, metrics = jax.block_until_ready(step(state, batch))  # compiles
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, batch))
    estimate = time.perf_counter() - start
    if estimate >= _TIMING_SECONDS / 2:  # a slow step is measured well enough by one
        return estimate * 1e3
    # Fast steps: several dispatched back to back, as the training loop runs them (no sync between steps).
    count = int(min(max(_TIMING_SECONDS / max(estimate, 1e-6), 2), _TIMING_MAX_STEPS))
    start = time.perf_counter()
    for _ in range(count):
        state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / count * 1e3


def _expand(output: Any) -> Any:
    """Give a single trial's metrics a leading trial axis of one (states pass through)."""
    if isinstance(output, tuple):
        state, metrics = output
        return state, jax.tree.map(lambda a: a[None], metrics)
    return jax.tree.map(lambda a: a[None], output)
