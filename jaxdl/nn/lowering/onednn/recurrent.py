"""oneDNN's LSTM layer as XLA custom calls (recurrent.cc): one unidirectional layer over whole sequences.

`lstm` computes what `jaxdl.nn.recurrent.RNN` computes by scanning `jaxdl.nn.recurrent.LSTMCell` over time
(same parameters, same gate order i, f, g, o), with oneDNN's fused kernels forward and backward: a
`jax.custom_vjp` whose forward pass keeps oneDNN's workspace for its backward pass. Under `jax.vmap` it runs
once per mapped element.
"""

from __future__ import annotations

import ctypes
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.nn.lowering.onednn import library


@functools.cache
def workspace_bytes(batch: int, time: int, features: int, hidden: int) -> int:
    """The bytes of oneDNN's training workspace for one layer of this shape (asked of oneDNN itself)."""
    function = library.load().jaxdl_onednn_lstm_workspace_bytes
    function.restype = ctypes.c_int64
    function.argtypes = [ctypes.c_int64] * 4
    size = int(function(batch, time, features, hidden))
    if size < 0:
        raise ValueError(f"oneDNN has no LSTM for batch {batch}, time {time}, features {features}, hidden {hidden}")
    return size


def _outputs(x: jax.Array, hidden: int, workspace: int) -> tuple[jax.ShapeDtypeStruct, ...]:
    batch, time, _ = x.shape
    state = jax.ShapeDtypeStruct((batch, hidden), x.dtype)
    return (jax.ShapeDtypeStruct((batch, time, hidden), x.dtype), state, state,
            jax.ShapeDtypeStruct((workspace,), jnp.uint8))


def _forward(x, h0, c0, kernel_x, kernel_h, bias, training: bool):
    hidden = kernel_h.shape[0]
    workspace = workspace_bytes(*x.shape, hidden) if training else 0
    return jax.ffi.ffi_call("jaxdl_onednn_lstm_forward", _outputs(x, hidden, workspace), vmap_method="sequential")(
        x, h0, c0, kernel_x, kernel_h, bias, training=np.int64(training))


@jax.custom_vjp
def lstm(x: jax.Array, h0: jax.Array, c0: jax.Array, kernel_x: jax.Array, kernel_h: jax.Array,
         bias: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x: [batch, time, features]`` through one LSTM layer from ``(c0, h0)`` (each ``[batch, hidden]``):
    returns ``(outputs [batch, time, hidden], h_last, c_last)``. ``kernel_x: [features, 4*hidden]``,
    ``kernel_h: [hidden, 4*hidden]``, ``bias: [4*hidden]``, gates i, f, g, o as in `LSTMCell`."""
    y, h_last, c_last, _ = _forward(x, h0, c0, kernel_x, kernel_h, bias, training=False)
    return y, h_last, c_last


def _lstm_forward(x, h0, c0, kernel_x, kernel_h, bias):
    y, h_last, c_last, workspace = _forward(x, h0, c0, kernel_x, kernel_h, bias, training=True)
    return (y, h_last, c_last), (x, h0, c0, kernel_x, kernel_h, bias, y, h_last, c_last, workspace)


def _lstm_backward(residuals, cotangents):
    x, h0, c0, kernel_x, kernel_h, bias = residuals[:6]
    shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, h0, c0, kernel_x, kernel_h, bias))
    return tuple(jax.ffi.ffi_call("jaxdl_onednn_lstm_backward", shapes, vmap_method="sequential")(
        *residuals, *cotangents))


lstm.defvjp(_lstm_forward, _lstm_backward)


def supports(x: jax.Array) -> bool:
    """Whether oneDNN's LSTM runs this float32 input here (`library.may_run`)."""
    return x.dtype == jnp.float32 and library.may_run(x)
