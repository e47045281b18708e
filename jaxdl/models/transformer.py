"""Transformers: encoder and decoder blocks, block stacks (optionally one ``nn.scan``), a text classifier, an
encoder-decoder seq2seq model with greedy decoding, a decoder-only language model with sampling, and a ViT.

Blocks follow Vaswani et al. (2017): attention and a position-wise feed-forward layer, each wrapped in a residual
connection and layer norm, applied before the sublayer (``norm="pre"``, stable for deep stacks) or after
it (``norm="post"``, the original Transformer). With ``scan_layers`` a stack of identical blocks is one
``nn.scan`` over stacked parameters, so compile time stays flat as depth grows.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.heads import DenseHead
from jaxdl.nn.activations import get_activation
from jaxdl.nn.attention import (
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
)
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.embedding import TokenEmbedding, token_validity
from jaxdl.nn.initializers import get_initializer
from jaxdl.nn.position import make_positional_encoding
from jaxdl.nn.sequence_pooling import pool_steps

NORMS = ("pre", "post")


class FeedForward(nn.Module):
    """Position-wise ``Dense(mlp_dim) -> activation -> dropout -> Dense(features)``, the same at every step."""

    mlp_dim: int
    activation: str = "gelu"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        init = get_initializer("xavier_uniform")
        h = get_activation(self.activation)(nn.Dense(self.mlp_dim, kernel_init=init, name="hidden")(x))
        h = Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(x.shape[-1], kernel_init=init, name="output")(h)


class _Residual(nn.Module):
    """``x + dropout(sublayer(norm(x)))`` (pre-norm) or ``norm(x + dropout(sublayer(x)))`` (post-norm)."""

    norm: str
    dropout_rate: float
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, sublayer: Callable[[jax.Array], jax.Array], train: bool) -> jax.Array:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm placement {self.norm!r}; valid ones are {list(NORMS)}")
        layer_norm = nn.LayerNorm(epsilon=self.epsilon, name="norm")
        drop = Dropout(self.dropout_rate, deterministic=not train)
        if self.norm == "pre":
            return x + drop(sublayer(layer_norm(x)))
        return layer_norm(x + drop(sublayer(x)))


class _Block(nn.Module):
    """Fields and sublayers shared by the encoder and decoder blocks."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    norm: str = "pre"
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-6
    train: bool = False

    def _attention(self, name: str, x: jax.Array, memory: jax.Array | None, mask: jax.Array | None) -> jax.Array:
        """``x`` plus (self- or cross-) attention to ``memory`` (``x`` itself when None), as a residual sublayer."""
        attention = MultiHeadAttention(self.num_heads, dropout_rate=self.attention_dropout_rate, name=name)
        return _Residual(self.norm, self.dropout_rate, self.layer_norm_epsilon, name=f"{name}_residual")(
            x, lambda h: attention(h, memory, mask=mask, train=self.train), self.train)

    def _feed_forward(self, x: jax.Array) -> jax.Array:
        ff = FeedForward(self.mlp_dim, self.activation, self.dropout_rate, name="feed_forward")
        return _Residual(self.norm, self.dropout_rate, self.layer_norm_epsilon, name="feed_forward_residual")(
            x, lambda h: ff(h, train=self.train), self.train)


class EncoderBlock(_Block):
    """Self-attention then feed-forward, each residual with layer norm: ``[batch, time, d] -> [batch, time, d]``.

    ``__call__(x, mask) -> (x, None)``: the ``(carry, output)`` form lets `BlockStack` scan it.
    """

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, None]:
        return self._feed_forward(self._attention("attention", x, None, mask)), None


class DecoderBlock(_Block):
    """Masked (causal) self-attention, cross-attention to the encoder's ``memory`` (when given), feed-forward.

    ``__call__((x, memory), (self_mask, memory_mask)) -> ((x, memory), None)``: ``x: [batch, time, d]``,
    ``memory: [batch, source_time, d]`` or None (a decoder-only language model).
    """

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array | None], masks: tuple[jax.Array | None, jax.Array | None]
                 ) -> tuple[tuple[jax.Array, jax.Array | None], None]:
        x, memory = carry
        self_mask, memory_mask = masks
        x = self._attention("self_attention", x, None, self_mask)
        if memory is not None:
            x = self._attention("cross_attention", x, memory, memory_mask)
        return (self._feed_forward(x), memory), None


class BlockStack(nn.Module):
    """``num_layers`` blocks ``block(*block_args, train=train)`` (`EncoderBlock` or `DecoderBlock` and their
    hyperparameters).

    Unrolled, parameters live under ``layer_0 .. layer_{n-1}``. With ``scan_layers`` they are stacked on a
    leading axis under ``layers`` and the blocks run as one ``nn.scan`` (each layer draws its own dropout
    key); `unstack_layer_params` converts between the two. With ``remat`` each block's activations are
    recomputed in the backward pass instead of stored (`jax.checkpoint`): memory of one block, ~1/3 more compute.
    """

    block: type[nn.Module]
    block_args: tuple[Any, ...]
    num_layers: int
    scan_layers: bool = False
    remat: bool = False

    @nn.compact
    def __call__(self, carry: Any, masks: Any, *, train: bool = False) -> Any:
        # CSE across the scan boundary cannot undo the recomputation, so it need not be prevented there.
        block = nn.remat(self.block, prevent_cse=not self.scan_layers) if self.remat else self.block
        if self.scan_layers:
            scanned = nn.scan(block, variable_axes={"params": 0, "intermediates": 0},
                              split_rngs={"params": True, "dropout": True}, in_axes=nn.broadcast,
                              length=self.num_layers)
            carry, _ = scanned(*self.block_args, train=train, name="layers")(carry, masks)
            return carry
        for layer in range(self.num_layers):
            carry, _ = block(*self.block_args, train=train, name=f"layer_{layer}")(carry, masks)
        return carry


def unstack_layer_params(params: dict[str, Any]) -> dict[str, Any]:
    """Scanned stack parameters ``{"layers": [n, ...]}`` -> the unrolled ``{"layer_i": ...}`` of the same stack."""
    stacked = params["layers"]
    count = jax.tree.leaves(stacked)[0].shape[0]
    return {f"layer_{i}": jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(count)}


def block_args(config: "TransformerConfig") -> tuple[Any, ...]:
    """`EncoderBlock`/`DecoderBlock` hyperparameters, in field order, from a model's shared config."""
    return (config.num_heads, config.mlp_dim, config.dropout_rate, config.attention_dropout_rate, config.norm,
            config.activation, config.layer_norm_epsilon)


class TransformerConfig(nn.Module):
    """Shared hyperparameters (a mixin of fields, never applied itself)."""

    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 512
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    norm: str = "pre"
    activation: str = "gelu"
    positional: str = "sinusoidal"
    scan_layers: bool = False
    remat: bool = False
    layer_norm_epsilon: float = 1e-6


class Encoder(TransformerConfig):
    """Embedded inputs ``[batch, time, d_model]`` (+ positional encoding) -> encoded ``[batch, time, d_model]``.

    ``valid: [batch, time]`` marks real tokens; padded keys are masked out. ``positional="none"`` leaves the
    encoder permutation-equivariant (no notion of order).
    """

    max_length: int = 512

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        position = make_positional_encoding(self.positional, self.max_length)
        if position is not None:
            x = position(x)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        mask = padding_mask(valid) if valid is not None else None
        x = BlockStack(EncoderBlock, block_args(self), self.num_layers, self.scan_layers, self.remat, name="blocks")(x, mask, train=train)
        return nn.LayerNorm(epsilon=self.layer_norm_epsilon, name="final_norm")(x) if self.norm == "pre" else x


class Decoder(TransformerConfig):
    """Embedded targets ``[batch, time, d_model]`` -> ``[batch, time, d_model]`` with causal self-attention and,
    when ``memory`` is given, cross-attention to it (``memory_valid`` masks its padding)."""

    max_length: int = 512

    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array | None = None, memory_valid: jax.Array | None = None,
                 valid: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        position = make_positional_encoding(self.positional, self.max_length)
        if position is not None:
            x = position(x)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        self_mask = combine_masks(causal_mask(x.shape[1]), padding_mask(valid) if valid is not None else None)
        memory_mask = padding_mask(memory_valid) if memory_valid is not None else None
        x, _ = BlockStack(DecoderBlock, block_args(self), self.num_layers, self.scan_layers, self.remat, name="blocks")(
            (x, memory), (self_mask, memory_mask), train=train)
        return nn.LayerNorm(epsilon=self.layer_norm_epsilon, name="final_norm")(x) if self.norm == "pre" else x


class TransformerClassifier(TransformerConfig):
    """Text classifier: token ids ``[batch, time]`` -> embedding -> `Encoder` -> pooling -> logits ``[batch, num_outputs]``.

    ``pooling`` is a `pool_steps` pooling: ``"mean"``, ``"max"``, ``"mean_max"`` over real tokens, or ``"first"``.
    Tokens equal to ``pad_id`` after the last real one are padding and masked out of attention and pooling.
    """

    vocab_size: int = 20000
    max_length: int = 512
    pooling: str = "mean"
    num_outputs: int = 2
    pad_id: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"TransformerClassifier expects token ids [batch, time], got shape {x.shape}")
        valid = token_validity(x, self.pad_id)
        # Scaled by sqrt(d_model): unit-scale components, like the positional encoding they are added to.
        h = TokenEmbedding(self.vocab_size, self.d_model, name="embed")(x) * jnp.sqrt(float(self.d_model))
        h = Encoder(**self._config_fields(), max_length=self.max_length, name="encoder")(h, valid, train=train)
        pooled = pool_steps(h, valid, self.pooling)
        return DenseHead((), self.num_outputs, dropout_rate=self.dropout_rate, name="head")(pooled, train=train)

    def _config_fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in TRANSFORMER_FIELDS}


TRANSFORMER_FIELDS = ("d_model", "num_heads", "num_layers", "mlp_dim", "dropout_rate", "attention_dropout_rate",
                      "norm", "activation", "positional", "scan_layers", "remat", "layer_norm_epsilon")

