"""Recurrent cells and a layer that runs any of them over time with ``scan``.

A cell maps ``(carry, x_t) -> (carry, h_t)`` for one time step; `RNN` scans it over ``[batch, time, features]``
with `flax.linen.scan` (one compiled step body, whatever the length), never a Python loop. With ``lengths``
the padded steps of each sequence leave its state unchanged and output zeros, so the final carry is the state
at each sequence's true end. On a CPU an LSTM layer runs as oneDNN's fused LSTM instead of the scan
(`jaxdl.nn.lowering.onednn.recurrent`), with the same parameters and results; lowering ``"xla"`` or
``"patches"`` keeps the scan.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.activations import get_activation
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.initializers import get_initializer
from jaxdl.nn.lowering.onednn import recurrent as onednn_recurrent

Carry = Any


class SimpleRNNCell(nn.Module):
    """The Elman recurrent cell: ``h_t = g(W_h h_{t-1} + W_x x_t + b)``, ``g`` chosen by name (tanh)."""

    hidden_size: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        w_x = nn.Dense(self.hidden_size, kernel_init=get_initializer("xavier_uniform"), name="input")
        w_h = nn.Dense(self.hidden_size, use_bias=False, kernel_init=jax.nn.initializers.orthogonal(), name="recurrent")
        h = get_activation(self.activation)(w_h(h) + w_x(x))
        return h, h

    def initial_carry(self, batch: int) -> jax.Array:
        """Zeros ``[batch, hidden_size]``."""
        return jnp.zeros((batch, self.hidden_size))


class LSTMCell(nn.Module):
    """Long short-term memory: input, forget and output gates and a cell state ``c``.

    ``i, f, o = sigmoid(W_* x + U_* h + b_*)``, ``g = tanh(W_g x + U_g h + b_g)``, ``c' = f c + i g``,
    ``h' = o tanh(c')``. The carry is ``(c, h)``; the forget-gate bias starts at 1 so memory is kept early on.
    """

    hidden_size: int

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        c, h = carry
        n = self.hidden_size
        forget_bias = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[n:2 * n].set(1.0)  # noqa: E731
        gates = (nn.Dense(4 * n, bias_init=forget_bias, kernel_init=get_initializer("xavier_uniform"), name="input")(x)
                 + nn.Dense(4 * n, use_bias=False, kernel_init=jax.nn.initializers.orthogonal(), name="recurrent")(h))
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def initial_carry(self, batch: int) -> tuple[jax.Array, jax.Array]:
        """Zero cell and hidden states, each ``[batch, hidden_size]``."""
        return jnp.zeros((batch, self.hidden_size)), jnp.zeros((batch, self.hidden_size))


class GRUCell(nn.Module):
    """Gated recurrent unit: reset gate ``r``, update gate ``z``.

    ``r, z = sigmoid(W_* x + U_* h + b_*)``, ``n = tanh(W_n x + b_n + r * (U_n h + b_hn))``,
    ``h' = (1 - z) n + z h``.
    """

    hidden_size: int

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = self.hidden_size
        wx = nn.Dense(3 * n, kernel_init=get_initializer("xavier_uniform"), name="input")(x)
        uh = nn.Dense(3 * n, kernel_init=jax.nn.initializers.orthogonal(), name="recurrent")(h)
        xr, xz, xn = jnp.split(wx, 3, axis=-1)
        hr, hz, hn = jnp.split(uh, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        candidate = jnp.tanh(xn + r * hn)
        h = (1.0 - z) * candidate + z * h
        return h, h

    def initial_carry(self, batch: int) -> jax.Array:
        """Zeros ``[batch, hidden_size]``."""
        return jnp.zeros((batch, self.hidden_size))


CELLS = {"rnn": SimpleRNNCell, "lstm": LSTMCell, "gru": GRUCell}


def _masked_step(cell: nn.Module, carry: Carry, inputs: tuple[jax.Array, jax.Array]) -> tuple[Carry, jax.Array]:
    """One time step of ``cell`` that keeps the carry and outputs zeros where ``valid`` is False."""
    x, valid = inputs
    new_carry, y = cell(carry, x)
    keep = lambda new, old: jnp.where(valid[:, None], new, old)  # noqa: E731
    return jax.tree.map(keep, new_carry, carry), jnp.where(valid[:, None], y, 0.0)


class RNN(nn.Module):
    """Run ``cell`` over ``x: [batch, time, features]`` with ``nn.scan``.

    Returns ``(final_carry, outputs [batch, time, hidden])``. ``lengths: [batch]`` (optional) gives each
    sequence's true length: steps at or past it neither change the carry nor produce output, so the final
    carry is the state after each sequence's last real step. ``reverse=True`` runs from the last real step
    backwards (padding stays at the end of the output, aligned with the input).
    """

    cell: nn.Module
    reverse: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, initial_carry: Carry | None = None
                 ) -> tuple[Carry, jax.Array]:
        if x.ndim != 3:
            raise ValueError(f"RNN expects inputs [batch, time, features], got shape {x.shape}")
        batch, time = x.shape[:2]
        every_step = lengths is None
        if lengths is None:
            lengths = jnp.full((batch,), time, jnp.int32)
        elif lengths.shape != (batch,):
            raise ValueError(f"RNN lengths must have shape ({batch},) to match the batch, got {lengths.shape}")
        valid = jnp.arange(time)[None, :] < lengths[:, None]  # [batch, time]
        if self.reverse:
            x = _reverse_valid(x, lengths)
        carry = self.cell.initial_carry(batch) if initial_carry is None else initial_carry
        if isinstance(self.cell, LSTMCell) and onednn_recurrent.supports(x) and not self.is_initializing():
            carry, outputs = _onednn_lstm(self.cell.variables["params"], x, None if every_step else (valid, lengths),
                                          carry)
            return carry, _reverse_valid(outputs, lengths) if self.reverse else outputs
        # The lifted scan shares the cell's parameters across steps and compiles one step body.
        scan = nn.scan(_masked_step, variable_broadcast="params", split_rngs={"params": False, "dropout": True},
                       in_axes=1, out_axes=1)
        carry, outputs = scan(self.cell, carry, (x, valid))
        if self.reverse:
            outputs = _reverse_valid(outputs, lengths)
        return carry, outputs


# A pre-activation that saturates a gate exactly (sigmoid gives exactly 0 or 1 in float32 beyond ~104).
_SATURATE = 1e6


def _onednn_lstm(params: dict, x: jax.Array, padding: tuple[jax.Array, jax.Array] | None,
                 carry: tuple[jax.Array, jax.Array]) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """`RNN` over `LSTMCell` by oneDNN's fused layer, with the same parameters and the same results.

    oneDNN runs every sequence for all ``time`` steps. Padded steps must leave the state alone: an extra input
    feature, 1 at padded steps, drives the input gate to exactly 0 and the forget gate to exactly 1 there, so
    ``c`` passes through unchanged (and so does its gradient, the saturated gates' derivatives being exactly 0).
    The hidden state at each sequence's end is its output at its last real step; outputs past it are zeros.
    ``padding`` is ``(valid [batch, time], lengths [batch])``, or None when every sequence runs every step:
    then oneDNN's own final states are the carry, with no extra feature, gather or mask (whose gradients cost
    ~4% of a 100-step layer's training step).
    """
    c0, h0 = carry
    hidden = params["recurrent"]["kernel"].shape[0]
    dtype = x.dtype
    kernels = (params["recurrent"]["kernel"].astype(dtype), params["input"]["bias"].astype(dtype))
    if padding is None:
        outputs, h_last, c_last = onednn_recurrent.lstm(x, h0.astype(dtype), c0.astype(dtype),
                                                        params["input"]["kernel"].astype(dtype), *kernels)
        return (c_last, h_last), outputs
    valid, lengths = padding
    gate_row = jnp.concatenate([jnp.full((hidden,), -_SATURATE, dtype), jnp.full((hidden,), _SATURATE, dtype),
                                jnp.zeros((2 * hidden,), dtype)])
    kernel_x = jnp.concatenate([params["input"]["kernel"].astype(dtype), gate_row[None]], axis=0)
    padded = jnp.logical_not(valid)[..., None].astype(dtype)
    outputs, _, c_last = onednn_recurrent.lstm(
        jnp.concatenate([x, padded], axis=-1), h0.astype(dtype), c0.astype(dtype), kernel_x, *kernels)
    last = jnp.take_along_axis(outputs, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
    h_last = jnp.where((lengths > 0)[:, None], last, h0.astype(dtype))
    return (c_last, h_last), jnp.where(valid[..., None], outputs, 0.0)


def _reverse_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each sequence's first ``lengths[b]`` steps in place, leaving its padding where it is."""
    time = x.shape[1]
    t = jnp.arange(time)[None, :]
    index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [batch, time]
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def make_cell(kind: str, hidden_size: int, activation: str = "tanh") -> nn.Module:
    """A cell by name: ``"rnn"`` (with ``activation``), ``"lstm"`` or ``"gru"``."""
    if kind not in CELLS:
        raise ValueError(f"unknown recurrent cell {kind!r}; valid names are {sorted(CELLS)}")
    # parent=None: the cell belongs to the RNN it is handed to, not to the module that happens to build it.
    if kind == "rnn":
        return SimpleRNNCell(hidden_size, activation, parent=None)
    return CELLS[kind](hidden_size, parent=None)


class Bidirectional(nn.Module):
    """A forward and a backward `RNN` over the same sequences, outputs concatenated on the feature axis.

    ``x: [batch, time, features] -> (carries (forward, backward), outputs [batch, time, 2 * hidden])``; the
    backward direction starts at each sequence's last real step (``lengths``), not at the padding.
    """

    forward_cell: nn.Module
    backward_cell: nn.Module

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> tuple[tuple[Carry, Carry], jax.Array]:
        # Unbound clones: each cell's parameters live under its own RNN ("forward/cell", "backward/cell").
        carry_f, out_f = RNN(self.forward_cell.clone(parent=None), name="forward")(x, lengths)
        carry_b, out_b = RNN(self.backward_cell.clone(parent=None), reverse=True, name="backward")(x, lengths)
        return (carry_f, carry_b), jnp.concatenate([out_f, out_b], axis=-1)


class StackedRNN(nn.Module):
    """``num_layers`` recurrent layers of ``cell`` ("rnn", "lstm", "gru"), optionally bidirectional, with
    dropout between layers (each layer draws its own mask from the ``dropout`` RNG).

    ``x: [batch, time, features] -> (final carries, one per layer; outputs [batch, time, hidden or 2*hidden])``.
    """

    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, *, train: bool = False
                 ) -> tuple[list[Carry], jax.Array]:
        carries = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout_rate:
                x = Dropout(self.dropout_rate, deterministic=not train, name=f"dropout_{layer}")(x)
            if self.bidirectional:
                carry, x = Bidirectional(make_cell(self.cell, self.hidden_size, self.activation),
                                         make_cell(self.cell, self.hidden_size, self.activation),
                                         name=f"layer_{layer}")(x, lengths)
            else:
                carry, x = RNN(make_cell(self.cell, self.hidden_size, self.activation), name=f"layer_{layer}")(x, lengths)
            carries.append(carry)
        return carries, x
