"""Pure train and eval steps.

``make_train_step`` and ``make_eval_step`` build functions of ``(state, batch)`` only: no Python side
effects, no devices named, so `jaxdl.train.parallel` can compile them for one device or many.
A batch is a dict ``{"x": [batch, ...], "y": labels or targets, "mask": [batch] bool (optional)}``;
masked-out rows (padding) contribute to neither the loss nor the metrics.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.losses import LossFn
from jaxdl.metrics import Metrics, MetricsFn
from jaxdl.train.state import TrainState

Batch = dict[str, jax.Array]
TrainStep = Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
EvalStep = Callable[[TrainState, Batch], Metrics]


def masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``values: [batch]`` over rows where ``mask`` is True (all rows when ``mask`` is None)."""
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def make_train_step(
    model: nn.Module,
    loss_fn: LossFn,
    metrics_fn: MetricsFn,
    tx: optax.GradientTransformation,
    penalty_fn: Callable[[Any], jax.Array] | None = None,
    augment_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> TrainStep:
    """Build ``train_step(state, batch) -> (state, metrics)``: one gradient step on the masked mean loss
    (plus ``penalty_fn(params)`` when given), with BatchNorm statistics updated in ``state.batch_stats``.
    ``augment_fn(key, x)`` (optional) transforms the inputs inside the compiled step. Dropout and
    augmentation keys derive from ``fold_in(state.rng, state.step)``. ``metrics`` are the batch's sums."""

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        x, y, mask = batch["x"], batch["y"], batch.get("mask")
        dropout_key, augment_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
        if augment_fn is not None:
            x = augment_fn(augment_key, x)
        uses_batch_norm = bool(state.batch_stats)

        def objective(params):
            variables = {"params": params}
            if uses_batch_norm:
                variables["batch_stats"] = state.batch_stats
                outputs, new_vars = model.apply(
                    variables, x, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"]
                )
            else:
                outputs, new_vars = model.apply(variables, x, train=True, rngs={"dropout": dropout_key}), {}
            per_example = loss_fn(outputs, y)
            loss = masked_mean(per_example, mask)
            if penalty_fn is not None:
                loss = loss + penalty_fn(params)
            return loss, (outputs, per_example, new_vars)

        grads, (outputs, per_example, new_vars) = jax.grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            batch_stats=new_vars.get("batch_stats", state.batch_stats),
        )
        return new_state, metrics_fn(outputs, y, per_example, mask)

    return train_step


def make_eval_step(model: nn.Module, loss_fn: LossFn, metrics_fn: MetricsFn) -> EvalStep:
    """Build ``eval_step(state, batch) -> metrics``: inference mode (no dropout, BatchNorm running averages)."""

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        x, y, mask = batch["x"], batch["y"], batch.get("mask")
        outputs = model.apply(state.variables(), x, train=False)
        return metrics_fn(outputs, y, loss_fn(outputs, y), mask)

    return eval_step


def make_predict_step(model: nn.Module) -> Callable[[TrainState, jax.Array], jax.Array]:
    """Build ``predict(state, x) -> outputs`` (logits or regression outputs) in inference mode."""

    def predict(state: TrainState, x: jax.Array) -> jax.Array:
        return model.apply(state.variables(), x, train=False)

    return predict
