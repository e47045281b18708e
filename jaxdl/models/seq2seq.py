"""Encoder-decoder Transformer for sequence-to-sequence tasks, trained with teacher forcing, decoded greedily.

Training input ``x = {"source": [batch, source_time], "target": [batch, target_time]}`` where ``target`` is
the decoder input (``BOS`` + the target shifted right); the output is logits ``[batch, target_time, vocab]``
for the next token at every step. Source and target share one vocabulary and embedding table.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.transformer import (
    TRANSFORMER_FIELDS,
    Decoder,
    Encoder,
    TransformerConfig,
)
from jaxdl.nn.embedding import TokenEmbedding, token_validity


class Seq2SeqTransformer(TransformerConfig):
    """``{"source", "target"}`` ids -> next-token logits ``[batch, target_time, vocab_size]`` (see module doc).

    `encode` and `decode` are exposed for `greedy_decode`; ``num_outputs`` must equal ``vocab_size``.
    """

    vocab_size: int = 32
    num_outputs: int | None = None
    max_length: int = 128
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def setup(self) -> None:
        if self.num_outputs not in (None, self.vocab_size):
            raise ValueError(f"a seq2seq model predicts tokens: num_outputs ({self.num_outputs}) must equal vocab_size ({self.vocab_size})")
        fields = {f: getattr(self, f) for f in TRANSFORMER_FIELDS}
        self.embed = TokenEmbedding(self.vocab_size, self.d_model)
        self.encoder = Encoder(**fields, max_length=self.max_length)
        self.decoder = Decoder(**fields, max_length=self.max_length)
        self.output = nn.Dense(self.vocab_size)

    def encode(self, source: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """``source: [batch, source_time]`` -> ``(memory [batch, source_time, d_model], valid [batch, source_time])``."""
        valid = token_validity(source, self.pad_id)
        return self.encoder(self.embed(source) * jnp.sqrt(float(self.d_model)), valid, train=train), valid

    def decode(self, target: jax.Array, memory: jax.Array, memory_valid: jax.Array, *, train: bool = False) -> jax.Array:
        """Decoder input ids ``[batch, time]`` + encoder memory -> next-token logits ``[batch, time, vocab_size]``."""
        h = self.decoder(self.embed(target) * jnp.sqrt(float(self.d_model)), memory, memory_valid, train=train)
        return self.output(h)

    def __call__(self, x: dict[str, jax.Array], *, train: bool = False) -> jax.Array:
        if not isinstance(x, dict) or set(x) != {"source", "target"}:
            raise ValueError("Seq2SeqTransformer expects x = {'source': ids [batch, s], 'target': ids [batch, t]}")
        memory, valid = self.encode(x["source"], train=train)
        return self.decode(x["target"], memory, valid, train=train)


def greedy_decode(model: Seq2SeqTransformer, variables: dict, source: jax.Array, max_length: int) -> jax.Array:
    """Decode ``source: [batch, source_time]`` greedily: start from ``BOS``, append the most likely token, stop
    a sequence at ``EOS``. Returns ids ``[batch, max_length]`` (the tokens after ``BOS``; ``pad_id`` after
    ``EOS``). The encoder runs once; each step re-runs the decoder on a fixed-size buffer under a causal mask
    inside one ``lax.fori_loop``, so decoding compiles once whatever ``max_length``."""
    memory, valid = model.apply(variables, source, method=Seq2SeqTransformer.encode)
    batch = source.shape[0]
    tokens = jnp.full((batch, max_length + 1), model.pad_id, jnp.int32).at[:, 0].set(model.bos_id)
    done = jnp.zeros((batch,), bool)

    def step(t: int, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        tokens, done = state
        logits = model.apply(variables, tokens[:, :-1], memory, valid, method=Seq2SeqTransformer.decode)
        next_token = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), axis=-1)
        next_token = jnp.where(done, model.pad_id, next_token).astype(jnp.int32)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, next_token, t + 1, axis=1)
        return tokens, done | (next_token == model.eos_id)

    tokens, _ = jax.lax.fori_loop(0, max_length, step, (tokens, done))
    return tokens[:, 1:]
