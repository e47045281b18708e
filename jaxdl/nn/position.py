"""Positional encodings added to token vectors ``[batch, time, features]``: fixed sinusoids or a learned table.

Attention alone is blind to order (permuting the tokens permutes its outputs); these give each position a
distinct vector. A sequence longer than the table is an error, never silently wrapped or clipped.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "none")


def sinusoidal_table(max_length: int, features: int) -> np.ndarray:
    """``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``: ``[max_length, features]``."""
    position = np.arange(max_length)[:, None]
    rate = 1.0 / (10000.0 ** (np.arange(0, features, 2) / features))
    table = np.zeros((max_length, features), np.float32)
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate)[:, : features // 2]
    return table


def _check_length(x: jax.Array, max_length: int) -> None:
    if x.ndim != 3:
        raise ValueError(f"positional encodings expect [batch, time, features], got shape {x.shape}")
    if x.shape[1] > max_length:
        raise ValueError(f"sequence of length {x.shape[1]} is longer than the positional table ({max_length} positions); "
                         f"truncate the input or build the model with max_length >= {x.shape[1]}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoid table (no parameters) for positions ``0..time-1``; ``time <= max_length``."""

    max_length: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_length(x, self.max_length)
        return x + jnp.asarray(sinusoidal_table(self.max_length, x.shape[-1])[None, : x.shape[1]], x.dtype)


class LearnedPositionalEncoding(nn.Module):
    """Adds a learned ``[max_length, features]`` table (initialised N(0, 0.02^2)); ``time <= max_length``."""

    max_length: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_length(x, self.max_length)
        table = self.param("table", nn.initializers.normal(stddev=0.02), (self.max_length, x.shape[-1]))
        return x + table[None, : x.shape[1]].astype(x.dtype)


def make_positional_encoding(kind: str, max_length: int) -> nn.Module | None:
    """``"sinusoidal"``, ``"learned"`` or ``"none"`` (None: no encoding, the model is order-blind)."""
    if kind not in POSITIONAL_ENCODINGS:
        raise ValueError(f"unknown positional encoding {kind!r}; valid ones are {list(POSITIONAL_ENCODINGS)}")
    if kind == "none":
        return None
    cls = SinusoidalPositionalEncoding if kind == "sinusoidal" else LearnedPositionalEncoding
    return cls(max_length, name="position")
