"""Activation functions by name.

Each function is its formula written in `jax.numpy`, with `jax.nn`'s value and gradient everywhere (ReLU's
gradient at 0 is 0, as `jax.nn.relu` defines it); `get_activation` turns a config string such as
``"relu"`` or ``"leaky_relu(alpha=0.2)"`` into a callable, so models name their non-linearity in data.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxdl.util.spec import parse_spec

Activation = Callable[[jax.Array], jax.Array]


def relu(x: jax.Array) -> jax.Array:
    """ReLU: ``max(0, x)``, with gradient 0 at 0 (`jax.nn.relu`'s; ``jnp.maximum`` would split it to 0.5)."""
    return jax.nn.relu(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, evaluated without overflow for large ``|x|``."""
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent ``(e^x - e^-x) / (e^x + e^-x)``."""
    return jnp.tanh(x)


def leaky_relu(x: jax.Array, alpha: float = 0.01) -> jax.Array:
    """Leaky ReLU ``max(alpha * x, x)`` for ``0 <= alpha < 1``: a small slope keeps negative units alive."""
    return jnp.where(x >= 0, x, alpha * x)


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax ``exp(x_i) / sum_j exp(x_j)`` along ``axis``; the max is subtracted first for stability."""
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
    """GELU ``x * Phi(x)`` with ``Phi`` the standard normal CDF (exact), or its tanh approximation."""
    if approximate:
        return 0.5 * x * (1 + jnp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + jax.lax.erf(x / math.sqrt(2)))


def identity(x: jax.Array) -> jax.Array:
    """The identity, for layers that should stay linear."""
    return x


ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
    "gelu": gelu,
    "identity": identity,
    "linear": identity,
}


def get_activation(spec: str | Activation) -> Activation:
    """Return the activation named by ``spec``.

    ``spec`` is a name (``"relu"``), a name with keyword arguments (``"leaky_relu(alpha=0.2)"``,
    ``"gelu(approximate=true)"``) or already a callable, which is returned unchanged. An unknown name or
    argument raises ``ValueError`` listing what is valid.
    """
    if callable(spec):
        return spec
    name, kwargs = parse_spec(spec, ACTIVATIONS, "activation")
    fn = ACTIVATIONS[name]
    return functools.partial(fn, **kwargs) if kwargs else fn
