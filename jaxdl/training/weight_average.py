"""An exponential moving average of the weights (Polyak averaging) for evaluation.

With ``train.ema_decay = d`` the `TrainState` carries ``average``, a copy of the parameters that each step
moves towards the new ones: ``average <- r * average + (1 - r) * params`` with ``r = min(d, (1 + t) / (10 + t))``
at step ``t`` (1-based; TensorFlow's ``ExponentialMovingAverage(num_updates=t)``), so a short run's average is
not dominated by the initial weights. Training never reads it; evaluation, prediction, the returned model
and a backbone taken from the run use it (`TrainState.inference_variables`). The average of the noisy end
of a trajectory usually generalises better than its last point (Polyak & Juditsky, 1992). BatchNorm
statistics stay those the trained weights gathered, as in timm's ``ModelEma`` with BatchNorm buffers copied.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def check_decay(decay: float, what: str = "train.ema_decay") -> float:
    """``decay`` as a float when it lies in [0, 1) (0 turns averaging off); ``ValueError`` otherwise."""
    decay = float(decay)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{what} is the decay of the weights' moving average: 0 (off) or in (0, 1), e.g. 0.999; "
                         f"got {decay}")
    return decay


def average_rate(decay: float, step: jax.Array) -> jax.Array:
    """The weight the old average keeps at (1-based) ``step``: ``min(decay, (1 + step) / (10 + step))``."""
    steps = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + steps) / (10.0 + steps))


def update_average(average: PyTree, params: PyTree, step: jax.Array, decay: float) -> PyTree:
    """``average`` moved towards ``params`` after (1-based) ``step`` with the rate `average_rate` gives."""
    return optax.incremental_update(params, average, 1.0 - average_rate(decay, step))


def copy_params(params: PyTree) -> PyTree:
    """A copy of ``params`` to start the average from: a donated state must not hold one buffer twice."""
    return jax.tree.map(lambda p: jnp.array(p, copy=True), params)
