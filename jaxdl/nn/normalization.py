"""Batch normalisation as every jaxdl model uses it, synchronised across devices by the strategy, not the model.

Under the ``pmap`` strategy each device sees a slice of the global batch; `jaxdl.distributed.parallel` traces
the step inside `synchronized_batch_norm`, so every `batch_norm` layer averages its mean and variance over the
devices (synchronised BatchNorm): the statistics, and so the training, equal the single-device run. Models
carry no axis argument. Under ``jit`` over a mesh the batch is one global array and XLA computes the same
statistics without being told.

In training on a CPU where oneDNN's kernels load, `BatchNorm` computes the statistics, the normalisation and
the backward pass with oneDNN's batch normalisation (`jaxdl.nn.lowering.onednn.batch_norm`): the same values
(up to float summation order) in one or two passes over the data, where XLA makes several.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.lowering.onednn import batch_norm as onednn_batch_norm

_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("jaxdl_batch_norm_axis", default=None)


@contextlib.contextmanager
def synchronized_batch_norm(axis_name: str | None) -> Iterator[None]:
    """Within the block, `batch_norm` layers traced average their statistics over the mapped axis ``axis_name``
    (None: each device's own batch)."""
    token = _AXIS.set(axis_name)
    try:
        yield
    finally:
        _AXIS.reset(token)


class BatchNorm(nn.BatchNorm):
    """`flax.linen.BatchNorm` (the same fields, parameters ``scale``/``bias`` and statistics ``mean``/``var``,
    so checkpoints and pretrained weights move between the two) whose training pass runs on oneDNN where it
    can: float32 inputs and parameters on a CPU with the kernels loaded, features on the last axis, no mask,
    no cross-device axis and outside initialisation. Everything else is flax's own computation.

    ``relu`` applies a ReLU to the output, after adding ``residual`` where one is given (the end of a
    residual block: ``relu(bn(x) + residual)``); on oneDNN's path both happen in the same call, and the ReLU
    without a residual in the normalisation's own passes over the data."""

    relu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *, mask: jax.Array | None = None,
                 residual: jax.Array | None = None):
        running = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
        if residual is not None and residual.shape != x.shape:
            raise ValueError(f"BatchNorm: the residual must have the input's shape {x.shape}, got {residual.shape}")
        if running or not self._onednn_applies(x, mask, residual):
            y = super().__call__(x, use_running_average, mask=mask)
            y = y if residual is None else y + residual
            return nn.relu(y) if self.relu else y
        features = (x.shape[-1],)
        # float32 statistics, as flax keeps them for float32 parameters (the only ones this path takes)
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        scale = self.param("scale", self.scale_init, features, self.param_dtype)
        bias = self.param("bias", self.bias_init, features, self.param_dtype)
        # oneDNN adds a residual only before its ReLU; without a ReLU it is added here
        fused = residual if self.relu else None
        y, mean, var = onednn_batch_norm.normalize(x, scale, bias, self.epsilon, self.relu, fused)
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y + residual if residual is not None and fused is None else y

    def _onednn_applies(self, x: jax.Array, mask: jax.Array | None, residual: jax.Array | None) -> bool:
        last = self.axis in (-1, x.ndim - 1)
        plain = self.use_scale and self.use_bias and self.dtype in (None, jnp.float32) and self.axis_name is None
        return (last and plain and mask is None and self.param_dtype == jnp.float32 and not self.is_initializing()
                and onednn_batch_norm.supports(x, residual))


def batch_norm(train: bool, name: str | None = None, epsilon: float = 1e-5, relu: bool = False) -> BatchNorm:
    """A BatchNorm layer (momentum 0.9, batch statistics in training, running averages otherwise), averaging its
    statistics over the axis of the innermost `synchronized_batch_norm` block; ``epsilon`` is added to the
    variance (pretrained networks need their own: 1e-3 for TensorFlow-trained ones); ``relu`` applies a ReLU
    after it (and after a ``residual`` the call adds), fused into oneDNN's passes where they run."""
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, axis_name=_AXIS.get(), name=name,
                     relu=relu)
