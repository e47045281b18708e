"""Pure train and eval steps.

``make_train_step`` and ``make_eval_step`` build functions of ``(state, batch)`` only: no Python side
effects, no devices named, so `jaxdl.distributed.parallel` can compile them for one device or many.
A batch is a dict ``{"x": [batch, ...], "y": labels or targets, "mask": [batch] bool (optional)}``;
masked-out rows (padding) contribute to neither the loss nor the metrics.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdl.losses import LossFn
from jaxdl.metrics import Metrics, MetricsFn
from jaxdl.training.optimizers import optimizer_update
from jaxdl.training.precision import all_finite, cast_floating, compute_dtype
from jaxdl.training.state import TrainState
from jaxdl.training.step_norms import LogWindows, StepNorms, TrainMetrics, norms_at_window_ends
from jaxdl.training.weight_average import check_decay, update_average

Batch = dict[str, jax.Array]
# ``test_time(forward, x) -> outputs``: a forward pass over several views of ``x`` combined into one prediction
# (`jaxdl.data.test_time.make_test_time_augmentation` builds them).
TestTimeAugmentation = Callable[[Callable[[jax.Array], jax.Array], jax.Array], jax.Array]
TrainStep = Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
EvalStep = Callable[[TrainState, Batch], Metrics]


def _over_views(forward: Callable[[jax.Array], jax.Array], x: jax.Array,
                test_time: TestTimeAugmentation | None) -> jax.Array:
    """``forward(x)``, or its outputs over ``test_time``'s views of ``x`` combined: what every evaluation path runs."""
    return forward(x) if test_time is None else test_time(forward, x)


def _rows(tree: Any) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


def _micro_batches(tree: Any, k: int) -> Any:
    """``[batch, ...] -> [k, batch // k, ...]`` for every leaf (micro-batch ``i`` holds rows ``i*b..(i+1)*b-1``)."""
    return jax.tree.map(lambda a: a.reshape((k, a.shape[0] // k) + a.shape[1:]), tree)


def make_train_step(
    model: nn.Module,
    loss_fn: LossFn,
    metrics_fn: MetricsFn,
    tx: optax.GradientTransformation,
    penalty_fn: Callable[[Any], jax.Array] | None = None,
    augment_fn: Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None = None,
    *,
    axis_name: str | None = None,
    accumulation_steps: int = 1,
    precision: str = "float32",
    ema_decay: float = 0.0,
    norms: bool = True,
    norms_at: LogWindows | None = None,
) -> TrainStep:
    """Build ``train_step(state, batch) -> (state, metrics)``: one gradient step on the masked mean loss
    (plus ``penalty_fn(params)`` when given), with BatchNorm statistics updated in ``state.batch_stats``.

    ``augment_fn(key, x, y) -> (x, y)`` (optional, `make_augmentation`) transforms the batch inside the compiled
    step (labels change only under mixup); dropout and augmentation
    keys derive from ``fold_in(state.rng, state.step)``. ``metrics`` are the batch's sums. With
    ``accumulation_steps=k`` the batch is split into ``k`` micro-batches whose gradients are summed in a
    ``scan`` (one optimizer update, memory of one micro-batch; BatchNorm sees micro-batch statistics).
    ``precision`` is the compute dtype (`jaxdl.training.precision`). ``axis_name`` is set when the step runs
    once per device under ``pmap``: the loss is normalised by the count of real rows over all devices and
    gradients and metrics are summed over the axis, so the update equals the single-device one on the
    whole batch; each device folds its index into the dropout/augmentation key. With ``ema_decay`` in (0, 1)
    the step also moves ``state.average`` (a state made with ``average=True``) towards the new parameters
    (`jaxdl.training.weight_average`). With ``norms`` (the default) the metrics are a `TrainMetrics`: the
    task's sums with the step's global gradient, update and parameter norms beside them
    (`jaxdl.training.step_norms`), measured every step, or with ``norms_at`` (the loop's `LogWindows`) only
    on each logging window's last step; ``norms=False`` returns the task's sums alone.
    """
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
    ema_decay = check_decay(ema_decay, "ema_decay")
    dtype = compute_dtype(precision)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        x, y = batch["x"], batch["y"]
        rows = _rows(y)
        mask = jnp.ones((rows,), bool) if batch.get("mask") is None else batch["mask"].astype(bool)
        key = jax.random.fold_in(state.rng, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        dropout_key, augment_key = jax.random.split(key)
        if augment_fn is not None:
            x, y = augment_fn(augment_key, x, y)
        # The loss is a sum over real rows divided by their total count (over all devices and micro-batches):
        # summing gradients of the parts then gives exactly the gradient of the whole batch's mean.
        count = jnp.sum(mask, dtype=jnp.float32)
        total = jnp.maximum(jax.lax.psum(count, axis_name) if axis_name is not None else count, 1.0)
        loss_scale = state.loss_scale

        def micro_step(batch_stats: Any, micro: tuple) -> tuple[Any, tuple[Any, Metrics]]:
            mx, my, mmask, mkey = micro

            def objective(params):
                variables = {"params": cast_floating(params, dtype)}
                inputs = cast_floating(mx, dtype)
                if batch_stats:
                    variables["batch_stats"] = batch_stats
                    outputs, new_vars = model.apply(variables, inputs, train=True, rngs={"dropout": mkey},
                                                    mutable=["batch_stats"])
                else:
                    outputs, new_vars = model.apply(variables, inputs, train=True, rngs={"dropout": mkey}), {}
                outputs = cast_floating(outputs, jnp.float32)
                per_example = loss_fn(outputs, my)
                loss = jnp.sum(jnp.where(mmask, per_example, 0.0)) / total
                if loss_scale is not None:
                    loss = loss_scale.scale_loss(loss)
                return loss, (outputs, per_example, new_vars.get("batch_stats", batch_stats))

            grads, (outputs, per_example, new_stats) = jax.grad(objective, has_aux=True)(state.params)
            return new_stats, (grads, metrics_fn(outputs, my, per_example, mmask))

        if accumulation_steps == 1:
            batch_stats, (grads, metrics) = micro_step(state.batch_stats, (x, y, mask, dropout_key))
        else:
            if rows % accumulation_steps:
                raise ValueError(f"a batch of {rows} rows does not split into accumulation_steps={accumulation_steps} "
                                 "equal micro-batches; make data.batch_size a multiple of it")
            micro = _micro_batches((x, y, mask), accumulation_steps) + (jax.random.split(dropout_key, accumulation_steps),)

            def accumulate(carry, micro):
                batch_stats, grad_sum, metric_sum = carry
                batch_stats, (grads, metrics) = micro_step(batch_stats, micro)
                return (batch_stats, jax.tree.map(jnp.add, grad_sum, grads), metric_sum.merge(metrics)), None

            # Zero sums of the right structure start the scan, so the model is traced once, inside it.
            zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(
                lambda: micro_step(state.batch_stats, jax.tree.map(lambda a: a[0], micro))[1]))
            (batch_stats, grads, metrics), _ = jax.lax.scan(accumulate, (state.batch_stats, *zeros), micro)
        if axis_name is not None:
            grads = jax.lax.psum(grads, axis_name)
            metrics = jax.lax.psum(metrics, axis_name)
        if loss_scale is not None:
            grads = loss_scale.unscale(grads)
        if penalty_fn is not None:
            grads = jax.tree.map(jnp.add, grads, jax.grad(penalty_fn)(state.params))
        mean_loss = (metrics.loss_sum / jnp.maximum(metrics.count, 1).astype(jnp.float32) if hasattr(metrics, "loss_sum")
                     and hasattr(metrics, "count") else None)
        if norms and norms_at is not None:
            step_norms, grads = norms_at_window_ends(
                norms_at, state.step, grads, state.params, state.opt_state,
                lambda g, o, p: optimizer_update(tx, g, o, p, mean_loss)[0])
        updates, opt_state = optimizer_update(tx, grads, state.opt_state, state.params, mean_loss)
        new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                                  opt_state=opt_state, batch_stats=batch_stats)
        if ema_decay:
            if state.average is None:
                raise ValueError("a step with ema_decay needs a state that keeps an average: "
                                 "create_train_state(..., average=True)")
            new_state = new_state.replace(average=update_average(state.average, new_state.params, new_state.step, ema_decay))
        if loss_scale is not None:
            # A float16 step whose gradients overflowed changes nothing but the scale.
            finite = all_finite(grads)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
            new_state = new_state.replace(params=keep(new_state.params, state.params),
                                          opt_state=keep(new_state.opt_state, state.opt_state),
                                          batch_stats=keep(new_state.batch_stats, state.batch_stats),
                                          average=keep(new_state.average, state.average),
                                          loss_scale=loss_scale.adjust(finite))
        if not norms:
            return new_state, metrics
        if norms_at is None:
            step_norms = StepNorms.of_step(grads, updates, new_state.params)
        if loss_scale is not None:
            # An overflowed float16 step (routine under dynamic loss scaling) changed nothing: it is not counted.
            step_norms = jax.tree.map(lambda a: jnp.where(finite, a, jnp.zeros_like(a)), step_norms)
        return new_state, TrainMetrics(metrics, step_norms)

    return train_step


def make_eval_step(model: nn.Module, loss_fn: LossFn, metrics_fn: MetricsFn, *, axis_name: str | None = None,
                   precision: str = "float32", test_time: TestTimeAugmentation | None = None) -> EvalStep:
    """Build ``eval_step(state, batch) -> metrics``: inference mode (no dropout, BatchNorm running averages,
    the parameters' moving average when the state keeps one), computing in ``precision``, the outputs averaged
    over ``test_time``'s views of each input when given; under ``pmap`` (``axis_name``) the metrics are summed
    over devices."""
    dtype = compute_dtype(precision)

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        x, y, mask = batch["x"], batch["y"], batch.get("mask")
        variables = state.inference_variables()
        variables = dict(variables, params=cast_floating(variables["params"], dtype))

        def forward(inputs: jax.Array) -> jax.Array:
            return cast_floating(model.apply(variables, inputs, train=False), jnp.float32)

        inputs = cast_floating(x, dtype)
        outputs = _over_views(forward, inputs, test_time)
        metrics = metrics_fn(outputs, y, loss_fn(outputs, y), mask)
        return jax.lax.psum(metrics, axis_name) if axis_name is not None else metrics

    return eval_step


def make_predict_step(model: nn.Module, test_time: TestTimeAugmentation | None = None
                      ) -> Callable[[TrainState, jax.Array], jax.Array]:
    """Build ``predict(state, x) -> outputs`` (logits or regression outputs) in inference mode, with the
    parameters' moving average when the state keeps one, averaged over ``test_time``'s views when given."""

    def predict(state: TrainState, x: jax.Array) -> jax.Array:
        forward = functools.partial(model.apply, state.inference_variables(), train=False)
        return _over_views(forward, x, test_time)

    return predict
