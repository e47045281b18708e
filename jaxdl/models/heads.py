"""Classifier heads shared by model families: features ``[batch, ...]`` -> outputs ``[batch, num_outputs]``."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxdl.nn.activations import get_activation
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.initializers import get_initializer


class DenseHead(nn.Module):
    """Flatten, hidden Dense layers with activation and dropout, then ``num_outputs`` logits (None: stop at the
    last hidden layer's activations, the features a transferred network passes to a new head)."""

    hidden_sizes: Sequence[int] = (128,)
    num_outputs: int | None = 10
    activation: str = "relu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        act = get_activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            if self.dropout_rate:
                x = Dropout(self.dropout_rate, deterministic=not train)(x)
            x = act(nn.Dense(width, kernel_init=get_initializer("he_normal"))(x))
        if self.num_outputs is None:
            return x
        if self.dropout_rate:
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=get_initializer("xavier_uniform"))(x)
