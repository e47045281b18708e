"""A 1-D convolutional network for sequences: classification or forecasting from ``[batch, time(, features)]``.

Blocks of `Conv1D` -> [BatchNorm] -> activation -> [pool over time], then the mean over the remaining steps and
a dense head: a small, fast alternative to a recurrent network for series (GunPoint, sensor windows) and,
with ``num_outputs`` set to a horizon, for direct multi-step forecasts.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.heads import DenseHead
from jaxdl.nn.activations import get_activation
from jaxdl.nn.conv1d import Conv1D
from jaxdl.nn.normalization import batch_norm


class SequenceCNN(nn.Module):
    """``x: [batch, time]`` or ``[batch, time, features]`` -> ``[batch, num_outputs]``.

    ``channels[i]`` is block i's width, each block a ``kernel_size`` convolution (``padding``: "SAME",
    "CAUSAL", ...), optional ``batch_norm``, ``activation`` and a max pool of ``pool_size`` over time (1: none);
    then the mean over time and a dense head (``head_sizes``, ``dropout_rate``). ``num_outputs`` None returns
    the pooled features (a backbone)."""

    channels: Sequence[int] = (32, 64)
    kernel_size: int = 5
    padding: str = "SAME"
    batch_norm: bool = True
    activation: str = "relu"
    pool_size: int = 2
    head_sizes: Sequence[int] = ()
    dropout_rate: float = 0.0
    num_outputs: int | None = 2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise ValueError(f"SequenceCNN expects [batch, time] or [batch, time, features], got {x.shape}")
        act = get_activation(self.activation)
        for width in self.channels:
            x = Conv1D(width, self.kernel_size, padding=self.padding, use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = batch_norm(train)(x)
            x = act(x)
            if self.pool_size > 1 and x.shape[1] >= self.pool_size:
                x = nn.max_pool(x, (self.pool_size,), strides=(self.pool_size,))
        features = jnp.mean(x, axis=1)
        if self.num_outputs is None:
            return features
        return DenseHead(self.head_sizes, self.num_outputs, dropout_rate=self.dropout_rate, name="head")(features, train=train)
