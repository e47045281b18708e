"""Recurrent models: a sequence classifier, a many-to-many tagger and a forecaster, all run with ``scan``.

Inputs are either token ids ``[batch, time]`` (int; embedded, with padding id ``pad_id`` marking each
sequence's end) or real-valued series ``[batch, time]`` / ``[batch, time, features]`` (all steps real).
Padded steps never change the recurrent state (`jaxdl.nn.recurrent.RNN` with lengths).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.heads import DenseHead
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.embedding import TokenEmbedding, token_validity
from jaxdl.nn.recurrent import StackedRNN
from jaxdl.nn.sequence_pooling import pool_steps

POOLINGS = ("last", "mean", "max", "mean_max")


def embed_tokens(ids: jax.Array, vocab_size: int, embed_dim: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Embed token ids ``[batch, time]``: returns ``(embeddings [batch, time, embed_dim], valid [batch, time])``,
    a step being valid while it precedes the padding (``pad_id`` after the last real token)."""
    if ids.ndim != 2:
        raise ValueError(f"token inputs must be ids [batch, time], got shape {ids.shape}")
    return TokenEmbedding(vocab_size, embed_dim, name="embed")(ids), token_validity(ids, pad_id)


def as_series(x: jax.Array) -> jax.Array:
    """A real-valued series as ``[batch, time, features]`` (a ``[batch, time]`` series gets one feature)."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"got integer inputs {x.dtype} but vocab_size is not set: set model.vocab_size for token ids")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"series inputs must be [batch, time] or [batch, time, features], got shape {x.shape}")
    return x


def series_features(x: jax.Array, frame_stride: int = 1, differences: bool = False, difference_scale: float = 1.0
                    ) -> jax.Array:
    """Optional preprocessing of a series ``[batch, time, features]`` inside the model (so it is compiled and
    applies to raw series at inference): average each ``frame_stride`` consecutive steps (a remainder at the
    end is dropped), then with ``differences`` append ``difference_scale * (x_t - x_{t-1})`` (0 at t=0)."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if frame_stride > 1:
        frames = x.shape[1] // frame_stride
        if frames == 0:
            raise ValueError(f"a series of {x.shape[1]} steps is shorter than frame_stride {frame_stride}")
        x = x[:, : frames * frame_stride].reshape(x.shape[0], frames, frame_stride, x.shape[2]).mean(axis=2)
    if differences:
        step = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], axis=1)
        x = jnp.concatenate([x, difference_scale * step], axis=-1)
    return x


def _hidden(carry: Any) -> jax.Array:
    """The hidden state in a cell's carry (an LSTM's carry is ``(c, h)``)."""
    return carry[1] if isinstance(carry, tuple) else carry


def pool_sequence(outputs: jax.Array, valid: jax.Array, final_carry: Any, pooling: str,
                  bidirectional: bool = False) -> jax.Array:
    """Summarise ``outputs: [batch, time, features]`` over valid steps: ``"last"`` (the final hidden state,
    of both directions when ``bidirectional``), or a `pool_steps` pooling ("mean", "max", "mean_max")."""
    if pooling == "last":
        if bidirectional:
            return jnp.concatenate([_hidden(c) for c in final_carry], axis=-1)
        return _hidden(final_carry)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid ones are {list(POOLINGS)}")
    return pool_steps(outputs, valid, pooling)


class _RecurrentBody(nn.Module):
    """Inputs -> (embedded/series inputs) -> `StackedRNN`; shared by the three recurrent models."""

    cell: str
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dropout_rate: float
    vocab_size: int | None
    embed_dim: int
    pad_id: int
    frame_stride: int = 1
    differences: bool = False
    difference_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array, Any]:
        if self.vocab_size is not None:
            inputs, valid = embed_tokens(x, self.vocab_size, self.embed_dim, self.pad_id)
            lengths = jnp.sum(valid, axis=1, dtype=jnp.int32)
            if self.dropout_rate:
                inputs = Dropout(self.dropout_rate, deterministic=not train)(inputs)
        elif isinstance(x, dict):  # real-valued series of different lengths, padded at the end
            if set(x) != {"values", "lengths"}:
                raise ValueError(f"a padded series input is a dict with keys ['lengths', 'values'], got {sorted(x)}")
            if self.frame_stride != 1 or self.differences:
                raise ValueError("series lengths apply to the steps as given: use frame_stride=1 and differences=False")
            inputs = as_series(x["values"])
            valid = jnp.arange(inputs.shape[1])[None, :] < x["lengths"][:, None]
            lengths = jnp.sum(valid, axis=1, dtype=jnp.int32)
        else:
            inputs = series_features(as_series(x), self.frame_stride, self.differences, self.difference_scale)
            valid = jnp.ones(inputs.shape[:2], bool)
            lengths = None  # unpadded series run every step: the recurrent layers need no padding machinery
        carries, outputs = StackedRNN(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                      self.dropout_rate, name="rnn")(inputs, lengths, train=train)
        return outputs, valid, carries[-1]


class SequenceClassifier(nn.Module):
    """Many-to-one: ``x: [batch, time(, features)] -> logits [batch, num_outputs]``.

    A ``cell`` ("rnn", "lstm", "gru") stack of ``num_layers`` (optionally ``bidirectional``), pooled over the
    real steps (``pooling``: "last", "mean", "max", "mean_max"), then a dense head with ``head_sizes``.
    Token inputs need ``vocab_size``; ``pad_id`` marks padding. Real-valued series of different lengths come as
    ``{"values": [batch, time(, features)], "lengths": [batch]}`` (padded at the end; padded steps never change
    the state or the pooling). Dropout (``dropout_rate``) acts on the
    embeddings, between recurrent layers and in the head. Series inputs may be framed and given first
    differences (``frame_stride``, ``differences``, ``difference_scale``: see `series_features`).
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    pooling: str = "last"
    head_sizes: Sequence[int] = ()
    num_outputs: int = 2
    vocab_size: int | None = None
    embed_dim: int = 128
    pad_id: int = 0
    frame_stride: int = 1
    differences: bool = False
    difference_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        outputs, valid, carry = _RecurrentBody(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                               self.dropout_rate, self.vocab_size, self.embed_dim, self.pad_id,
                                               self.frame_stride, self.differences, self.difference_scale,
                                               name="body")(x, train)
        features = pool_sequence(outputs, valid, carry, self.pooling, self.bidirectional)
        return DenseHead(self.head_sizes, self.num_outputs, dropout_rate=self.dropout_rate, name="head")(features, train=train)


class SequenceTagger(nn.Module):
    """Many-to-many: one prediction per step, ``x: [batch, time(, features)] -> logits [batch, time, num_outputs]``.

    Same body as `SequenceClassifier` (bidirectional taggers see both sides of each step); outputs at padded
    steps are computed but meaningless, and the loss ignores them (`sequence_cross_entropy`'s ``ignore_label``).
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout_rate: float = 0.0
    num_outputs: int = 2
    vocab_size: int | None = None
    embed_dim: int = 128
    pad_id: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        outputs, _, _ = _RecurrentBody(self.cell, self.hidden_size, self.num_layers, self.bidirectional,
                                       self.dropout_rate, self.vocab_size, self.embed_dim, self.pad_id,
                                       name="body")(x, train)
        if self.dropout_rate:
            outputs = Dropout(self.dropout_rate, deterministic=not train)(outputs)
        return nn.Dense(self.num_outputs, name="head")(outputs)


class Forecaster(nn.Module):
    """A window of a series -> the next ``horizon`` values: ``x: [batch, window(, features)] -> [batch, horizon]``
    (windows of different lengths as ``{"values": ..., "lengths": [batch]}``, padded at the end).

    ``horizon=1`` is one-step forecasting; ``horizon>1`` predicts the whole horizon at once (the direct
    strategy). `recursive_forecast` rolls a one-step model forward instead.
    """

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout_rate: float = 0.0
    head_sizes: Sequence[int] = ()
    horizon: int = 1
    differences: bool = False
    difference_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        outputs, valid, carry = _RecurrentBody(self.cell, self.hidden_size, self.num_layers, False,
                                               self.dropout_rate, None, 0, 0, 1, self.differences,
                                               self.difference_scale, name="body")(x, train)
        features = pool_sequence(outputs, valid, carry, "last")
        return DenseHead(self.head_sizes, self.horizon, dropout_rate=self.dropout_rate, name="head")(features, train=train)


def recursive_forecast(model: nn.Module, variables: Any, window: jax.Array, steps: int) -> jax.Array:
    """Forecast ``steps`` values by feeding a one-step model's predictions back into its window.

    ``window: [batch, window_length]`` (univariate) -> ``[batch, steps]``. Runs as one ``lax.scan``.
    """
    def step(current: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        prediction = model.apply(variables, current, train=False)[:, 0]
        return jnp.concatenate([current[:, 1:], prediction[:, None]], axis=1), prediction

    _, predictions = jax.lax.scan(step, window, None, length=steps)
    return predictions.T
