"""Batch normalisation in training by oneDNN (batch_norm.cc): statistics, normalisation and the backward pass.

`normalize` computes what `flax.linen.BatchNorm` computes in training on ``x: [..., channels]``: the batch's
mean and biased variance per channel, and ``(x - mean) / sqrt(var + epsilon) * scale + shift``. It is a
`jax.custom_vjp` whose backward pass is oneDNN's (the gradients of ``x``, ``scale`` and ``shift`` with the
statistics' dependence on ``x``); the returned mean and variance, which a model keeps as running averages, are
differentiable too (their gradients are added in JAX, only where they are not symbolically zero).

Under `jax.vmap` the mapped axis folds into the channels (each mapped element, a trial of `jaxdl.tune` for
instance, normalises over its own batch). Over a device mesh a batch split across devices needs statistics
over the whole batch, which one oneDNN call cannot see: each device then computes its sums in XLA and the
devices add them (``psum``), so the values are the global batch's, as flax computes them; an unsplit batch
runs oneDNN on every device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive
from jax.interpreters import batching

from jaxdl.nn.lowering.onednn import library, partition

forward_p = Primitive("jaxdl_onednn_batch_norm_forward")
forward_p.multiple_results = True
backward_p = Primitive("jaxdl_onednn_batch_norm_backward")
backward_p.multiple_results = True


def _channels(x):
    return jax.core.ShapedArray((x.shape[-1],), x.dtype)


forward_p.def_abstract_eval(lambda x, scale, shift, *, epsilon: (jax.core.ShapedArray(x.shape, x.dtype),
                                                                 _channels(x), _channels(x)))
backward_p.def_abstract_eval(lambda x, scale, mean, var, dy, *, epsilon: (jax.core.ShapedArray(x.shape, x.dtype),
                                                                          _channels(x), _channels(x)))


def _forward_call(epsilon, x, scale, shift):
    shapes = (jax.ShapeDtypeStruct(x.shape, x.dtype), *(jax.ShapeDtypeStruct(scale.shape, x.dtype),) * 2)
    return jax.ffi.ffi_call(forward_p.name, shapes)(x, scale, shift, epsilon=np.float32(epsilon))


def _backward_call(epsilon, x, scale, mean, var, dy):
    shapes = (jax.ShapeDtypeStruct(x.shape, x.dtype), *(jax.ShapeDtypeStruct(scale.shape, x.dtype),) * 2)
    return jax.ffi.ffi_call(backward_p.name, shapes)(x, scale, mean, var, dy, epsilon=np.float32(epsilon))


# The same computations in XLA, for a batch split across devices: sums over each device's rows, added across
# the batch's devices.
def _forward_summed(axes, epsilon, x, scale, shift):
    rows = jax.lax.psum(x.shape[0], axes)
    mean = jax.lax.psum(jnp.sum(x, axis=0), axes) / rows
    var = jax.lax.psum(jnp.sum(jnp.square(x - mean[None]), axis=0), axes) / rows
    return (x - mean[None]) * (scale * jax.lax.rsqrt(var + epsilon))[None] + shift[None], mean, var


def _backward_summed(axes, epsilon, x, scale, mean, var, dy):
    rows = jax.lax.psum(x.shape[0], axes)
    inverse = jax.lax.rsqrt(var + epsilon)
    normalized = (x - mean[None]) * inverse[None]
    dshift = jax.lax.psum(jnp.sum(dy, axis=0), axes)
    dscale = jax.lax.psum(jnp.sum(dy * normalized, axis=0), axes)
    dx = (scale * inverse)[None] * (dy - dshift[None] / rows - normalized * (dscale / rows)[None])
    return dx, dscale, dshift


def _partitioned(call, summed, rule):
    def partition_(epsilon, mesh, arg_shapes, result_shapes):
        batch = partition.batch_sharding(mesh, arg_shapes[0])
        axes = batch.spec[0]
        local = (functools.partial(call, epsilon) if axes is None else functools.partial(summed, axes, epsilon))
        channels = partition.replicated(mesh)
        return (mesh, local, (batch, channels, channels),
                tuple(batch if len(a.shape) == 2 else channels for a in arg_shapes))

    def infer(epsilon, mesh, arg_shapes, result_shapes):
        return partition.batch_sharding(mesh, arg_shapes[0]), partition.replicated(mesh), partition.replicated(mesh)
    return partition.rule(call, (0,), rule, partition_, infer)


_forward_partitioned = _partitioned(_forward_call, _forward_summed, "n c, c, c -> n c, c, c")
_backward_partitioned = _partitioned(_backward_call, _backward_summed, "n c, c, c, c, n c -> n c, c, c")
partition.register(forward_p, lambda x, scale, shift, *, epsilon: _forward_partitioned(epsilon, x, scale, shift),
                   lambda x, scale, shift, *, epsilon: _forward_call(epsilon, x, scale, shift), multiple_results=True)
partition.register(
    backward_p, lambda *args, epsilon: _backward_partitioned(epsilon, *args),
    lambda *args, epsilon: _backward_call(epsilon, *args), multiple_results=True)


# vmap: the mapped axis joins the channels, so that each mapped element has statistics of its own.
def _into_channels(value, dim, size, rows_axis: bool):
    value = partition.to_front(value, dim, size)
    return value.transpose(1, 0, 2).reshape(value.shape[1], -1) if rows_axis else value.reshape(-1)


def _out_of_channels(value, size):
    return value.reshape(size, -1) if value.ndim == 1 else value.reshape(value.shape[0], size, -1).transpose(1, 0, 2)


def _batched(primitive):
    def rule(args, dims, *, epsilon):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        folded = [_into_channels(a, d, size, a.ndim - (d is not None) == 2) for a, d in zip(args, dims)]
        return [_out_of_channels(o, size) for o in primitive.bind(*folded, epsilon=epsilon)], [0, 0, 0]
    return rule


batching.primitive_batchers[forward_p] = _batched(forward_p)
batching.primitive_batchers[backward_p] = _batched(backward_p)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _normalize_rows(x, scale, shift, epsilon):
    return tuple(forward_p.bind(x, scale, shift, epsilon=epsilon))


def _normalize_forward(x, scale, shift, epsilon):
    x, scale, shift = x.value, scale.value, shift.value  # symbolic_zeros wraps the primal arguments
    y, mean, var = forward_p.bind(x, scale, shift, epsilon=epsilon)
    return (y, mean, var), (x, scale, mean, var)


def _normalize_backward(epsilon, residuals, cotangents):
    x, scale, mean, var = residuals
    dy, dmean, dvar = (jnp.zeros_like(x) if isinstance(cotangents[0], SymbolicZero) else cotangents[0], *cotangents[1:])
    dx, dscale, dshift = backward_p.bind(x, scale, mean, var, dy, epsilon=epsilon)
    rows = x.shape[0]
    if not isinstance(dmean, SymbolicZero):
        dx = dx + dmean[None] / rows
    if not isinstance(dvar, SymbolicZero):
        dx = dx + (x - mean[None]) * (2 * dvar / rows)[None]
    return dx, dscale, dshift


_normalize_rows.defvjp(_normalize_forward, _normalize_backward, symbolic_zeros=True)


def normalize(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x: [..., channels]`` normalised over every axis but the last with the batch's statistics, then scaled
    and shifted per channel: returns ``(y, mean, biased variance)``, by oneDNN."""
    y, mean, var = _normalize_rows(x.reshape(-1, x.shape[-1]), scale, shift, float(epsilon))
    return y.reshape(x.shape), mean, var


def supports(x: jax.Array) -> bool:
    """Whether oneDNN normalises this float32 batch ``[..., channels]`` here (`library.may_run`); the scale
    and shift must be float32 too."""
    return x.ndim >= 2 and x.dtype == jnp.float32 and library.may_run(x)
