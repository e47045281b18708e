"""Pooling a sequence of step features ``[batch, time, features]`` into one vector per sequence, over its real
steps only: padded steps (``valid`` false) never contribute, so a batch padded to any length pools the same."""

from __future__ import annotations

import jax
import jax.numpy as jnp

STEP_POOLINGS = ("mean", "max", "mean_max", "first")


def pool_steps(x: jax.Array, valid: jax.Array, pooling: str) -> jax.Array:
    """Pool ``x: [batch, time, features]`` over the steps where ``valid: [batch, time]`` is true.

    ``"mean"`` and ``"max"`` reduce over valid steps (a sequence with none pools to zeros rather than NaN or
    -inf), ``"mean_max"`` concatenates both (``[batch, 2 * features]``) and ``"first"`` takes step 0 (a
    ``[CLS]`` token's output).
    """
    if pooling not in STEP_POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid ones are {list(STEP_POOLINGS)}")
    if valid.shape != x.shape[:2]:
        raise ValueError(f"valid must be [batch, time] = {x.shape[:2]}, got shape {valid.shape}")
    if pooling == "first":
        return x[:, 0]
    keep = valid[..., None]
    count = jnp.sum(keep, axis=1, dtype=x.dtype)
    mean = jnp.sum(jnp.where(keep, x, 0), axis=1) / jnp.maximum(count, 1)
    maximum = jnp.where(count > 0, jnp.max(jnp.where(keep, x, -jnp.inf), axis=1), 0)
    if pooling == "mean":
        return mean
    if pooling == "max":
        return maximum
    return jnp.concatenate([mean, maximum], axis=-1)
