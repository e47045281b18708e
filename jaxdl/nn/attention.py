"""Scaled dot-product attention, its masks, and multi-head attention (self and cross).

``attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V``. A mask is boolean, True where a query may attend to a
key, and broadcasts to ``[batch, heads, queries, keys]``. Masked keys get exactly zero weight; a query with no
key to attend to (a padded query) outputs zeros.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.dropout import dropout
from jaxdl.nn.initializers import get_initializer


def padding_mask(valid: jax.Array) -> jax.Array:
    """``valid: [batch, keys]`` (True for real tokens) -> mask ``[batch, 1, 1, keys]``: no query attends to padding."""
    return valid[:, None, None, :]


def causal_mask(length: int) -> jax.Array:
    """``[1, 1, length, length]``: query ``t`` may attend to keys ``0..t`` only."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical AND of the masks that are not None (None when all are)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def _check_mask(mask: jax.Array, batch: int, heads: int, queries: int, keys: int) -> None:
    target = (batch, heads, queries, keys)
    if mask.ndim != 4 or any(m not in (1, t) for m, t in zip(mask.shape, target)):
        raise ValueError(f"attention mask has shape {tuple(mask.shape)}, which does not broadcast to [batch, heads, "
                         f"queries, keys] = {list(target)}; build it with padding_mask(valid [batch, keys]) or causal_mask(length)")
    if mask.dtype != jnp.bool_:
        raise ValueError(f"attention mask must be boolean (True = may attend), got dtype {mask.dtype}")


def attention_weights(query: jax.Array, key: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``softmax(Q K^T / sqrt(d_k))`` over keys, masked: ``[batch, heads, queries, keys]``; each query's weights
    sum to 1 over its unmasked keys (0 everywhere when it has none)."""
    batch, heads, queries, depth = query.shape
    keys = key.shape[2]
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key) / jnp.sqrt(jnp.asarray(depth, query.dtype))
    if mask is not None:
        _check_mask(mask, batch, heads, queries, keys)
        # The most negative finite number: exp() of it underflows to exactly 0, and no inf - inf NaNs arise.
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)  # a query whose keys are all masked gets zero weights, not a uniform average
    return weights


def scaled_dot_product_attention(query: jax.Array, key: jax.Array, value: jax.Array, mask: jax.Array | None = None
                                 ) -> tuple[jax.Array, jax.Array]:
    """``softmax(Q K^T / sqrt(d_k)) V`` for ``query: [batch, heads, queries, d_k]``, ``key: [batch, heads, keys, d_k]``,
    ``value: [batch, heads, keys, d_v]``. Returns ``(outputs [batch, heads, queries, d_v], weights)``."""
    weights = attention_weights(query, key, mask)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, value), weights


class MultiHeadAttention(nn.Module):
    """``num_heads`` attention heads over learned projections, then an output projection.

    ``inputs_q: [batch, queries, features]``, ``inputs_kv: [batch, keys, features]`` (defaults to ``inputs_q``:
    self-attention) -> ``[batch, queries, out_features or features]``. Each head works in ``features /
    num_heads`` dimensions. ``dropout_rate`` drops attention weights in training. The weights are sown as
    ``intermediates/attention_weights`` for inspection (``mutable=["intermediates"]``).
    """

    num_heads: int
    out_features: int | None = None
    dropout_rate: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array | None = None, mask: jax.Array | None = None,
                 *, train: bool = False) -> jax.Array:
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        features = inputs_q.shape[-1]
        if features % self.num_heads:
            raise ValueError(f"features {features} must be divisible by num_heads {self.num_heads}")
        head_dim = features // self.num_heads
        init = get_initializer("xavier_uniform")

        def project(x: jax.Array, name: str) -> jax.Array:
            y = nn.DenseGeneral((self.num_heads, head_dim), kernel_init=init, use_bias=self.use_bias, name=name)(x)
            return y.transpose(0, 2, 1, 3)  # [batch, heads, time, head_dim]

        q, k, v = project(inputs_q, "query"), project(inputs_kv, "key"), project(inputs_kv, "value")
        weights = attention_weights(q, k, mask)
        self.sow("intermediates", "attention_weights", weights)
        if self.dropout_rate and train:
            weights = dropout(weights, self.dropout_rate, self.make_rng("dropout"))
        outputs = jnp.einsum("bhqk,bhkd->bqhd", weights, v)  # [batch, queries, heads, head_dim]
        return nn.DenseGeneral(self.out_features or features, axis=(-2, -1), kernel_init=init,
                               use_bias=self.use_bias, name="out")(outputs)
