"""Global norms of a step's gradients, parameters and updates, computed inside the compiled step.

`make_train_step` returns `TrainMetrics`: the task's metric sums with `StepNorms` beside them. The norms are
sums over steps like every other metric leaf, so a logging window (or an epoch) merges by addition and
``compute()`` reports the window's mean norms next to the loss: ``grad_norm`` (the gradient the optimizer
received, after any all-reduce and loss unscaling, before clipping), ``update_norm`` (what was added to the
parameters, learning rate included) and ``param_norm`` (the parameters after the step). The three norms are
reductions over tensors the step holds anyway; reading them on the host happens only at the loop's syncs.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdl.metrics import Metrics, Sums


@flax.struct.dataclass
class StepNorms(Sums):
    """Sums over steps of the global L2 norms, and the number of steps summed."""

    grad_norm_sum: jax.Array
    update_norm_sum: jax.Array
    param_norm_sum: jax.Array
    steps: jax.Array

    @classmethod
    def of_step(cls, grads: Any, updates: Any, params: Any) -> "StepNorms":
        """The norms of one step (float32 whatever the parameters' dtype, so bfloat16 trees do not overflow)."""
        norm = lambda tree: optax.tree.norm(jax.tree.map(lambda a: a.astype(jnp.float32), tree))  # noqa: E731
        return cls(norm(grads), norm(updates), norm(params), jnp.ones((), jnp.int32))

    def compute(self) -> dict[str, float]:
        """Mean norms over the steps summed (host values)."""
        steps = max(int(self.steps), 1)
        return {"grad_norm": float(self.grad_norm_sum) / steps, "update_norm": float(self.update_norm_sum) / steps,
                "param_norm": float(self.param_norm_sum) / steps}


@flax.struct.dataclass
class TrainMetrics(Sums):
    """What a train step reports: ``task`` (the task's metric sums, e.g. `ClassificationMetrics`) and
    ``norms``; ``compute()`` is the task's numbers with the mean norms added. The task's fields read through
    (``metrics.loss_sum`` is ``metrics.task.loss_sum``), so code written for the task's sums keeps working."""

    task: Metrics
    norms: StepNorms

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the dataclass lacks; never for dunders or ``task`` itself, which copy and
        # pickle probe before the fields exist.
        if name.startswith("__") or name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)

    def compute(self) -> dict[str, Any]:
        """The task's computed metrics and the window's mean ``grad_norm``, ``update_norm``, ``param_norm``."""
        return {**self.task.compute(), **self.norms.compute()}


def task_metrics(metrics: Any) -> Any:
    """The task's own sums of a train step's ``metrics`` (themselves when they carry no norms)."""
    return metrics.task if isinstance(metrics, TrainMetrics) else metrics
