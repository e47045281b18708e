"""What `jaxdl.fit` optimises and reports: a loss given by name or as a function, and metrics by name or function.

Names are jaxdl's task losses (``"binary_cross_entropy"``, ``"softmax_cross_entropy"``, ``"mse"``, ...) or their
Keras spellings (``"binary_crossentropy"``, ``"categorical_crossentropy"``, ``"sparse_categorical_crossentropy"``,
``"mean_squared_error"``). Cross-entropies take logits by default; ``from_logits=False`` takes probabilities (a
model ending in a sigmoid or a softmax), turned into logits by clipped logs, so loss and metrics are the logit
ones. A loss function is ``loss(outputs, labels) -> [batch]``; a metric function ``metric(outputs, labels) ->
[batch]`` is averaged over the examples.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from jaxdl.metrics import Sums, as_mask, loss_and_count
from jaxdl.tasks import get_task, registered_losses

KERAS_NAMES = {"binary_crossentropy": "binary_cross_entropy", "categorical_crossentropy": "softmax_cross_entropy",
               "sparse_categorical_crossentropy": "softmax_cross_entropy", "mean_squared_error": "mse"}
CROSS_ENTROPIES = ("binary_cross_entropy", "softmax_cross_entropy")
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before their log, as Keras does


def probabilities_as_logits(probabilities: jax.Array, binary: bool) -> jax.Array:
    """Logits whose sigmoid (``binary``) or softmax gives ``probabilities`` (clipped away from 0 and 1)."""
    p = jnp.clip(probabilities, EPSILON, 1.0 - EPSILON)
    return jnp.log(p) - jnp.log1p(-p) if binary else jnp.log(p)


@flax.struct.dataclass
class LossMetrics(Sums):
    """Sums for a loss alone: ``loss_sum`` and ``count``."""

    loss_sum: jax.Array
    count: jax.Array

    def compute(self) -> dict[str, float]:
        """The mean loss and the example count."""
        host = jax.device_get(self)
        return {"loss": float(host.loss_sum) / max(int(host.count), 1), "count": int(host.count)}


@flax.struct.dataclass
class WithMeans(Sums):
    """A metrics value (``base``) and the sums of per-example user metrics over the same examples."""

    base: Any
    sums: dict[str, jax.Array]
    count: jax.Array

    def compute(self) -> dict[str, float]:
        """The base metrics and each user metric's mean."""
        out = self.base.compute()
        count = max(int(jax.device_get(self.count)), 1)
        out.update({name: float(value) / count for name, value in jax.device_get(self.sums).items()})
        return out


@dataclasses.dataclass(frozen=True)
class Objective:
    """``loss(outputs, labels) -> [batch]`` and ``metrics(outputs, labels, loss, mask) -> Sums`` for the steps;
    ``name`` the task loss and ``task`` its `jaxdl.tasks.Task` (both None for a function), ``from_logits`` what
    the model outputs, ``shown`` the metric names the history keeps (None: all)."""

    loss: Callable
    metrics: Callable
    name: str | None
    from_logits: bool
    shown: tuple[str, ...] | None
    task: Any = None


def _loss_name(loss: str) -> str:
    name = KERAS_NAMES.get(loss, loss)
    valid = sorted(set(registered_losses()) - {"gan"}) + sorted(KERAS_NAMES)
    if name not in registered_losses() or name == "gan":
        raise ValueError(f"unknown loss {loss!r}; valid names are {valid}, or pass a function loss(outputs, labels) -> [batch]")
    return name


def make_objective(loss: str | Callable, metrics: Sequence[str | Callable] | None, from_logits: bool,
                   num_outputs: int | None) -> Objective:
    """The `Objective` of ``loss`` and ``metrics`` (see the module docstring) for a model with ``num_outputs``
    entries in its output's last axis."""
    if callable(loss):
        loss_fn, name, task = loss, None, None

        def base_metrics(outputs: Any, labels: Any, per_example: jax.Array, mask: jax.Array | None) -> Sums:
            return LossMetrics(**loss_and_count(per_example, as_mask(mask, per_example.shape[0])))
    else:
        name = _loss_name(loss)
        classes = 2 if name == "binary_cross_entropy" else num_outputs if name == "softmax_cross_entropy" else None
        task = get_task({"name": name}, classes)
        loss_fn, base_metrics = task.loss(), task.metrics()
        if not from_logits:
            if name not in CROSS_ENTROPIES:
                raise ValueError(f"from_logits=False applies to {list(CROSS_ENTROPIES)}, not {loss!r}")
            binary = name == "binary_cross_entropy"
            logit_loss, logit_metrics = loss_fn, base_metrics

            def loss_fn(outputs: jax.Array, labels: jax.Array) -> jax.Array:  # noqa: F811
                return logit_loss(probabilities_as_logits(outputs, binary), labels)

            def base_metrics(outputs: Any, labels: Any, per_example: jax.Array, mask: Any) -> Sums:  # noqa: F811
                return logit_metrics(probabilities_as_logits(outputs, binary), labels, per_example, mask)
    named = [m for m in (metrics or ()) if isinstance(m, str)]
    functions = {getattr(m, "__name__", f"metric_{i}"): m for i, m in enumerate(metrics or ()) if not isinstance(m, str)}
    if functions:
        inner = base_metrics

        def base_metrics(outputs: Any, labels: Any, per_example: jax.Array, mask: Any) -> Sums:  # noqa: F811
            m = as_mask(mask, per_example.shape[0])
            sums = {k: jnp.sum(jnp.where(m, f(outputs, labels), 0.0)).astype(jnp.float32) for k, f in functions.items()}
            return WithMeans(inner(outputs, labels, per_example, mask), sums, jnp.sum(m).astype(jnp.int32))
    shown = None if metrics is None else ("loss", *named, *functions)
    return Objective(loss_fn, base_metrics, name, from_logits, shown, task)
