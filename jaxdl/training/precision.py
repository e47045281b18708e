"""Mixed precision: compute in bfloat16 or float16 while parameters and optimizer state stay float32.

The step casts the float32 parameters (and floating inputs) to the compute dtype before ``model.apply`` and
the outputs back to float32 before the loss, so gradients arrive in float32 through the cast and the
optimizer never sees a low-precision number. bfloat16 has float32's exponent range and needs nothing else.
float16 does not: small gradients underflow to zero, so float16 training multiplies the loss by a dynamic
scale (`DynamicLossScale`), divides the gradients by it, skips the update of any step whose gradients are
not finite and halves the scale, and doubles it again after a run of good steps.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(precision: str) -> Any:
    """The dtype that ``precision`` ("float32", "bfloat16" or "float16") computes in."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid ones are {list(PRECISIONS)}")
    return PRECISIONS[precision]


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast the floating-point leaves of ``tree`` to ``dtype``; integer leaves (token ids, labels) are kept."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def all_finite(tree: Any) -> jax.Array:
    """True when every element of every leaf of ``tree`` is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


@flax.struct.dataclass
class DynamicLossScale:
    """The loss multiplier of float16 training: ``scale``, and ``good_steps`` since it last changed.

    After ``period`` consecutive steps with finite gradients the scale doubles; a step with a non-finite
    gradient halves it (never below 1) and resets the count.
    """

    scale: jax.Array
    good_steps: jax.Array
    period: int = flax.struct.field(pytree_node=False, default=2000)

    @classmethod
    def create(cls, initial_scale: float = 2.0**15, period: int = 2000) -> "DynamicLossScale":
        """A loss scale starting at ``initial_scale``."""
        return cls(jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32), period)

    def scale_loss(self, loss: jax.Array) -> jax.Array:
        """``loss * scale``."""
        return loss * self.scale.astype(loss.dtype)

    def unscale(self, grads: Any) -> Any:
        """``grads / scale``, in float32."""
        return jax.tree.map(lambda g: g.astype(jnp.float32) / self.scale, grads)

    def adjust(self, finite: jax.Array) -> "DynamicLossScale":
        """The scale for the next step, given whether this step's gradients were all finite."""
        grown = self.good_steps + 1 >= self.period
        scale = jnp.where(finite, jnp.where(grown, self.scale * 2.0, self.scale), jnp.maximum(self.scale / 2.0, 1.0))
        good = jnp.where(finite & ~grown, self.good_steps + 1, 0)
        return self.replace(scale=scale, good_steps=good.astype(jnp.int32))
