"""Global norms of a step's gradients, parameters and updates, computed inside the compiled step.

`make_train_step` returns `TrainMetrics`: the task's metric sums with `StepNorms` beside them. The norms are
sums over the steps that measured them, with their count, so a logging window (or an epoch) merges by addition
and ``compute()`` reports the mean norms next to the loss: ``grad_norm`` (the gradient the optimizer received,
after any all-reduce and loss unscaling, before clipping), ``update_norm`` (what was added to the parameters,
learning rate included) and ``param_norm`` (the parameters after the step).

Every step can measure them, or only the last step of each of the loop's logging windows (`LogWindows`, what
`jaxdl train` and `jaxdl.fit` do): the log line then shows the norms of the step it is written at, and the
other steps skip the three extra passes over gradients, updates and parameters, which cost a parameter-heavy,
compute-light model (an MLP on a CPU) ~15% of its step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

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

    @classmethod
    def unmeasured(cls) -> "StepNorms":
        """The sums of a step that measured nothing (zero norms, zero steps)."""
        zero = jnp.zeros((), jnp.float32)
        return cls(zero, zero, zero, jnp.zeros((), jnp.int32))

    def compute(self) -> dict[str, float]:
        """Mean norms over the steps that measured them (host values); empty when none did."""
        steps = int(self.steps)
        if steps == 0:
            return {}
        return {"grad_norm": float(self.grad_norm_sum) / steps, "update_norm": float(self.update_norm_sum) / steps,
                "param_norm": float(self.param_norm_sum) / steps}


@dataclasses.dataclass(frozen=True)
class LogWindows:
    """The training loop's logging windows: ``log_every`` steps each, and an epoch of ``steps_per_epoch`` steps
    (None: epochs are not counted) closes its last window early, as `jaxdl.training.loop` logs."""

    log_every: int
    steps_per_epoch: int | None = None

    def closes(self, batch: Any) -> Any:
        """Whether an epoch's ``batch``-th step (counted from 1; a Python int or an integer array) ends a window."""
        ends = batch % self.log_every == 0
        return ends if self.steps_per_epoch is None else ends | (batch == self.steps_per_epoch)

    def closes_step(self, step: Any) -> Any:
        """Whether the step of global index ``step`` (counted from 0, epochs from step 0) ends a window."""
        return self.closes((step % self.steps_per_epoch if self.steps_per_epoch else step) + 1)


def norms_at_window_ends(windows: LogWindows, step: jax.Array, grads: Any, params: Any, opt_state: Any,
                         update: Callable[[Any, Any, Any], Any]) -> tuple[StepNorms, Any]:
    """The norms of step ``step`` if it ends one of ``windows`` (`StepNorms.unmeasured` otherwise), and
    ``grads`` to hand to the optimizer. ``update(grads, opt_state, params) -> updates`` is the step's own
    optimizer update, run a second time (on measured steps only) inside a `jax.lax.cond` from the step's
    inputs, so no step materialises its updates for the norms.

    The returned gradients carry a zero derived from the condition's result. The parameters and optimizer
    state are donated and updated in place; tying the update to the condition orders the condition's reads
    of the old values before those writes, where XLA would otherwise copy the whole state every step to keep
    them (the compiled program is checked for those copies in the tests). A zero from the integer count, not
    a float norm: an infinite norm times zero would poison the gradients with NaN.
    """
    def measured(grads: Any, params: Any, opt_state: Any) -> StepNorms:
        updates = update(grads, opt_state, params)
        return StepNorms.of_step(grads, updates, optax.apply_updates(params, updates))

    norms = jax.lax.cond(windows.closes_step(step), measured, lambda *_: StepNorms.unmeasured(), grads, params,
                         opt_state)
    tie = jnp.minimum(norms.steps, 0)
    return norms, jax.tree.map(lambda g: g + tie.astype(g.dtype), grads)


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
