"""Multilayer perceptron: ``[batch, ...] -> flatten -> (Dense -> [BatchNorm] -> act -> [Dropout]) x k -> Dense``."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxdl.nn.activations import get_activation
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.initializers import get_initializer
from jaxdl.nn.normalization import batch_norm


class MLP(nn.Module):
    """Fully connected classifier/regressor.

    ``x: [batch, ...]`` (flattened) ``-> [batch, num_outputs]``. Hidden layers have ``hidden_sizes`` units,
    the named ``activation``, optional batch norm before the activation and dropout after it.
    """

    hidden_sizes: Sequence[int] = (512, 512)
    num_outputs: int = 10
    activation: str = "relu"
    dropout_rate: float = 0.0
    batch_norm: bool = False
    kernel_init: str = "he_normal"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = get_activation(self.activation)
        init = get_initializer(self.kernel_init)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            x = nn.Dense(width, kernel_init=init, use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = batch_norm(train)(x)
            x = act(x)
            if self.dropout_rate:
                x = Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=get_initializer("xavier_uniform"))(x)
