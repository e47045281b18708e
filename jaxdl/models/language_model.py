"""Decoder-only Transformer language model (causal self-attention) and autoregressive sampling.

Trained on ids ``x: [batch, time]`` against the same ids shifted left (``y[t] = x[t + 1]``, padding
labelled -1), with `jaxdl.losses.sequence_cross_entropy`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.transformer import TRANSFORMER_FIELDS, Decoder, TransformerConfig
from jaxdl.nn.embedding import TokenEmbedding, token_validity


class TransformerLM(TransformerConfig):
    """Ids ``[batch, time]`` -> next-token logits ``[batch, time, vocab_size]``; position ``t`` sees tokens ``<= t`` only."""

    vocab_size: int = 256
    num_outputs: int | None = None
    max_length: int = 256
    pad_id: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.num_outputs not in (None, self.vocab_size):
            raise ValueError(f"a language model predicts tokens: num_outputs ({self.num_outputs}) must equal vocab_size ({self.vocab_size})")
        if x.ndim != 2:
            raise ValueError(f"TransformerLM expects token ids [batch, time], got shape {x.shape}")
        h = TokenEmbedding(self.vocab_size, self.d_model, name="embed")(x) * jnp.sqrt(float(self.d_model))
        h = Decoder(**{f: getattr(self, f) for f in TRANSFORMER_FIELDS}, max_length=self.max_length, name="decoder")(
            h, valid=token_validity(x, self.pad_id), train=train)
        return nn.Dense(self.vocab_size, name="output")(h)


def sample(model: TransformerLM, variables: dict, prompt: jax.Array, num_tokens: int, key: jax.Array,
           temperature: float = 1.0, top_k: int | None = None) -> jax.Array:
    """Continue ``prompt: [batch, prompt_time]`` (no padding) by ``num_tokens`` sampled tokens.

    Each token is drawn from ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely ids
    (all when None); ``temperature=0`` picks the most likely. Returns ``[batch, prompt_time + num_tokens]``.
    The loop is one ``lax.fori_loop`` over a fixed buffer (the causal mask hides the unfilled part), so it
    compiles once; the whole sequence must fit ``model.max_length``.
    """
    batch, start = prompt.shape
    total = start + num_tokens
    if total > model.max_length:
        raise ValueError(f"prompt ({start}) + num_tokens ({num_tokens}) exceeds the model's max_length {model.max_length}")
    if top_k is not None and not 1 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k must be in [1, {model.vocab_size}], got {top_k}")
    tokens = jnp.zeros((batch, total), jnp.int32).at[:, :start].set(prompt)

    def step(t: int, tokens: jax.Array) -> jax.Array:
        logits = model.apply(variables, tokens)
        logits = jax.lax.dynamic_index_in_dim(logits, t - 1, axis=1, keepdims=False)
        if temperature == 0:
            choice = jnp.argmax(logits, axis=-1)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
                logits = jnp.where(logits < kth, -jnp.inf, logits)
            choice = jax.random.categorical(jax.random.fold_in(key, t), logits)
        return jax.lax.dynamic_update_index_in_dim(tokens, choice.astype(jnp.int32), t, axis=1)

    return jax.lax.fori_loop(start, total, step, tokens)
