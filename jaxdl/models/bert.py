"""A BERT-style text encoder built from jaxdl's Transformer blocks (the architecture of MiniLM-L6).

Embeddings (token + learned position + token type, then LayerNorm and dropout) feed a stack of post-norm
`EncoderBlock`s with exact GELU; the output is one vector per token. `mean_pool_normalized` turns them
into sentence embeddings the way sentence-transformers does (mean over real tokens, then L2 normalisation).
`jaxdl.transfer.minilm` imports pretrained weights into this module's parameter tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.transformer import BlockStack, EncoderBlock, TransformerConfig, block_args
from jaxdl.nn.attention import padding_mask
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.embedding import check_token_ids
from jaxdl.nn.sequence_pooling import pool_steps


def mean_pool_normalized(hidden: jax.Array, valid: jax.Array) -> jax.Array:
    """Sentence embeddings: the mean of ``hidden: [batch, time, d]`` over real tokens, scaled to unit length."""
    pooled = pool_steps(hidden, valid, "mean")
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


class BertEncoder(TransformerConfig):
    """Token ids ``[batch, time]`` (+ ``valid`` mask, + optional ``token_types``) -> hidden states ``[batch, time, d_model]``.

    Defaults are MiniLM-L6's: 6 post-norm layers, d_model 384, 12 heads, MLP 1536, exact GELU, LayerNorm
    epsilon 1e-12, 512 positions, 2 token types, vocabulary 30,522.
    """

    d_model: int = 384
    num_heads: int = 12
    num_layers: int = 6
    mlp_dim: int = 1536
    dropout_rate: float = 0.1
    norm: str = "post"
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-12
    vocab_size: int = 30522
    max_length: int = 512
    type_vocab_size: int = 2

    @nn.compact
    def __call__(self, ids: jax.Array, valid: jax.Array | None = None, token_types: jax.Array | None = None,
                 *, train: bool = False) -> jax.Array:
        if ids.ndim != 2:
            raise ValueError(f"BertEncoder expects token ids [batch, time], got shape {ids.shape}")
        if ids.shape[1] > self.max_length:
            raise ValueError(f"a sequence of {ids.shape[1]} tokens is longer than the {self.max_length} positions "
                             "this encoder has; truncate the inputs")
        check_token_ids(ids, self.vocab_size, "BertEncoder ids")
        token_types = jnp.zeros_like(ids) if token_types is None else token_types
        init = nn.initializers.normal(stddev=0.02)
        x = (nn.Embed(self.vocab_size, self.d_model, embedding_init=init, name="word_embeddings")(ids)
             + nn.Embed(self.max_length, self.d_model, embedding_init=init, name="position_embeddings")(
                 jnp.arange(ids.shape[1])[None, :])
             + nn.Embed(self.type_vocab_size, self.d_model, embedding_init=init, name="token_type_embeddings")(token_types))
        x = nn.LayerNorm(epsilon=self.layer_norm_epsilon, name="embeddings_norm")(x)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        mask = padding_mask(valid) if valid is not None else None
        return BlockStack(EncoderBlock, block_args(self), self.num_layers, self.scan_layers, self.remat,
                          name="blocks")(x, mask, train=train)
