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
import warnings
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.prefetch import prefetch
from jaxdl.metrics import Metrics
from jaxdl.train.loop import MAX_STEPS_IN_FLIGHT
from jaxdl.train.state import TrainState

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


def fit_stacked(
    states: TrainState,
    train_step: Callable,
    eval_step: Callable,
    batches: BatchesFn,
    num_epochs: int,
    validation: EvalBatchesFn | None = None,
    per_trial_data: bool = False,
    vmap: bool = True,
) -> StackedResult:
    """Train stacked ``states`` (``[trials, ...]``) for ``num_epochs`` with the pure, uncompiled steps.

    ``batches(epoch)`` yields the epoch's training batches and ``validation()`` the evaluation batches;
    with ``per_trial_data`` every leaf has a leading trial axis (trial ``t`` sees ``leaf[t]``), otherwise
    all trials see the same batch. With ``vmap`` one compiled program steps every trial; without, each
    trial trains alone, one after another, with the same batches: the same numbers to float32 rounding.
    """
    trials = num_trials(states)
    data_axis = 0 if per_trial_data else None
    if vmap:
        step = jax.jit(jax.vmap(train_step, in_axes=(0, data_axis)), donate_argnums=0)
        evaluate = jax.jit(jax.vmap(eval_step, in_axes=(0, data_axis)))
        return _epochs(states, step, evaluate, batches, validation, num_epochs, lambda b: b)
    # A trial axis of one on the metrics (inside the compiled step) lets a lone trial reuse the stacked bookkeeping.
    step = jax.jit(lambda s, b: _expand(train_step(s, b)), donate_argnums=0)
    evaluate = jax.jit(lambda s, b: _expand(eval_step(s, b)))
    results = []
    for t in range(trials):
        select = (lambda b, t=t: jax.tree.map(lambda a: a[t], b)) if per_trial_data else (lambda b: b)
        one = _epochs(unstack(states, t), step, evaluate, batches, validation, num_epochs, select)
        results.append(one)
    history = [[r.history[e][0] for r in results] for e in range(num_epochs)]
    return StackedResult(stack([r.states for r in results]), history)


def _expand(output: Any) -> Any:
    """Give a single trial's metrics a leading trial axis of one (states pass through)."""
    if isinstance(output, tuple):
        state, metrics = output
        return state, jax.tree.map(lambda a: a[None], metrics)
    return jax.tree.map(lambda a: a[None], output)
