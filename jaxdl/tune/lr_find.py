"""A learning-rate range test: many constant rates trained side by side in one vmapped program.

`find_learning_rate` starts one trial per rate (log-spaced between ``min_rate`` and ``max_rate``) from the same
initial parameters, feeds every trial the same batches for ``steps`` steps with a constant rate (the config's
schedule and plateau reduction are set aside: the test measures the rate itself), and keeps each step's loss
on the device until the end. A trial has diverged once its loss is not finite or exceeds
`DIVERGENCE_FACTOR` times its first loss. The suggested rate is the one whose trial ends lowest (the mean
loss over the last fifth of the steps) among those that did not diverge: the largest rate that still trains
well in a short run, which is where a full run's peak rate belongs. Unlike a single run whose rate grows
every step, each rate here is trained on its own, so a loss at a rate is not mixed with the history of
smaller ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl.experiment.build import build_experiment
from jaxdl.report.plots import plot_lr_find
from jaxdl.training.loop import MAX_STEPS_IN_FLIGHT
from jaxdl.training.optimizers import set_hyperparams
from jaxdl.training.step_norms import task_metrics
from jaxdl.tune.stacked import over_trials, stack
from jaxdl.util.atomic_file import write_text_atomically
from jaxdl.util.workdir_lock import hold_workdir

DIVERGENCE_FACTOR = 4.0


@dataclasses.dataclass
class RangeTest:
    """``rates[t]`` and ``losses[t, step]`` (NaN from the step a trial diverged), each trial's ``final_loss``
    (mean over the last fifth of its steps) and the ``suggested`` rate (None when every trial diverged)."""

    rates: np.ndarray
    losses: np.ndarray
    final_loss: np.ndarray
    diverged: np.ndarray
    suggested: float | None

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the suggested rate and one row per trial."""
        return {"suggested_learning_rate": self.suggested, "steps": int(self.losses.shape[1]),
                "trials": [{"learning_rate": float(r), "final_loss": float(f) if math.isfinite(f) else None, "diverged": bool(d)}
                           for r, f, d in zip(self.rates, self.final_loss, self.diverged)]}


def _constant_rate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(config.to_dict())
    config.optimizer.schedule = "constant"
    config.optimizer.plateau_patience = 0
    config.train.strategy = "jit"  # the trials share one device through vmap
    return config


def _batches(train: Any, batch_size: int, seed: int, steps: int) -> Iterator[dict]:
    """The first ``steps`` training batches, epoch after epoch, in the order training would see them."""
    epoch, produced = 1, 0
    while produced < steps:
        before = produced
        for batch in train.train_batches(batch_size, seed, epoch):
            yield batch
            produced += 1
            if produced == steps:
                return
        if produced == before:
            raise ValueError(f"data.batch_size {batch_size} exceeds the {len(train)} training examples")
        epoch += 1


def range_test_losses(config: ml_collections.ConfigDict, rates: np.ndarray, steps: int, data: Any = None) -> np.ndarray:
    """``losses[trial, step]``: each step's mean training loss of a trial per rate, all trials one vmapped
    program (the batches are shared, the rates live in the optimizer state)."""
    config = _constant_rate(config)
    exp = build_experiment(config, data=data, tunable=True)
    states = stack([exp.state.replace(opt_state=set_hyperparams(exp.state.opt_state, learning_rate=float(r)))
                    for r in rates])
    stepped = over_trials(exp.pure_train_step, len(rates), per_trial_data=False)

    def step(states, batch):
        states, metrics = stepped(states, batch)
        sums = task_metrics(metrics)
        return states, sums.loss_sum / jnp.maximum(sums.count, 1).astype(jnp.float32)

    step = jax.jit(step, donate_argnums=0)
    losses = []
    for batch in _batches(exp.data.train, config.data.batch_size, config.data.seed, steps):
        states, loss = step(states, jax.device_put(batch))
        losses.append(loss)
        if len(losses) > MAX_STEPS_IN_FLIGHT:
            jax.block_until_ready(losses[-MAX_STEPS_IN_FLIGHT - 1])
    return np.stack(jax.device_get(losses), axis=1).astype(np.float64)


def judge(rates: np.ndarray, losses: np.ndarray) -> RangeTest:
    """Mark divergence, average each trial's last fifth and suggest the rate that ends lowest."""
    losses = np.array(losses, np.float64)
    first = losses[:, :1]
    bad = ~np.isfinite(losses) | (losses > DIVERGENCE_FACTOR * np.abs(first))
    from_bad = np.cumsum(bad, axis=1) > 0
    losses[from_bad] = np.nan
    diverged = from_bad.any(axis=1)
    tail = max(losses.shape[1] // 5, 1)
    final = np.array([np.mean(row[-tail:]) if not d else math.nan for row, d in zip(losses, diverged)])
    candidates = np.flatnonzero(~diverged)
    suggested = float(rates[candidates[np.argmin(final[candidates])]]) if candidates.size else None
    return RangeTest(np.asarray(rates, np.float64), losses, final, diverged, suggested)


def find_learning_rate(config: ml_collections.ConfigDict, min_rate: float = 1e-5, max_rate: float = 1.0,
                       num_rates: int = 12, steps: int = 100, workdir: str | pathlib.Path | None = None,
                       data: Any = None) -> RangeTest:
    """Run the range test for ``config``'s model, data and optimizer over ``num_rates`` log-spaced rates in
    ``[min_rate, max_rate]`` for ``steps`` steps. With a ``workdir``, writes ``lr_find.json`` and
    ``lr_find.png`` (loss curves and final loss against the rate, the suggestion marked). Memory grows with
    ``num_rates``: every trial holds its own parameters, optimizer state and activations."""
    if not 0 < min_rate < max_rate:
        raise ValueError(f"the range test needs 0 < min_rate < max_rate, got {min_rate} and {max_rate}")
    if num_rates < 2 or steps < 1:
        raise ValueError(f"the range test needs num_rates >= 2 and steps >= 1, got {num_rates} and {steps}")
    rates = np.geomspace(min_rate, max_rate, num_rates)
    if workdir is None:
        return judge(rates, range_test_losses(config, rates, steps, data))
    with hold_workdir(workdir, writer=jax.process_index() == 0) as workdir:  # one writer per directory
        result = judge(rates, range_test_losses(config, rates, steps, data))
        if jax.process_index() != 0:
            return result
        write_text_atomically(workdir / "lr_find.json", json.dumps(result.summary(), indent=2))
        plot_lr_find(result.rates, result.losses, result.final_loss, result.suggested, workdir / "lr_find.png")
        return result
