"""Batch normalisation in training by oneDNN (batch_norm.cc): statistics, normalisation and the backward pass.

`normalize` computes what `flax.linen.BatchNorm` computes in training on ``x: [..., channels]``: the batch's
mean and biased variance per channel, and ``(x - mean) / sqrt(var + epsilon) * scale + shift``. It is a
`jax.custom_vjp` whose backward pass is oneDNN's (the gradients of ``x``, ``scale`` and ``shift`` with the
statistics' dependence on ``x``); the returned mean and variance, which a model keeps as running averages, are
differentiable too (their gradients are added in JAX, only where they are not symbolically zero).

``relu=True`` applies the ReLU that follows most normalisations in a CNN inside oneDNN's passes: the forward
pass keeps a workspace of which outputs the ReLU kept (a bit per element) and the backward pass masks the
output gradient with it, so neither the ReLU nor its gradient costs a pass over the data of its own. With a
``residual`` (the end of a residual block, ``relu(bn(x) + residual)``) the same call adds and rectifies by
oneDNN's binary primitive, and its backward pass derives the ReLU's mask from the output and returns the
residual's gradient: the block's output is computed once, where XLA's elementwise fusions recomputed each
block's input from the chain of earlier sums.

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

FUSES = ("", "relu", "add_relu")  # what follows the normalisation in the same call (the kernels' `fuse` code)

forward_p = Primitive("jaxdl_onednn_batch_norm_forward")
forward_p.multiple_results = True
backward_p = Primitive("jaxdl_onednn_batch_norm_backward")
backward_p.multiple_results = True


@functools.cache
def workspace_bytes(rows: int, channels: int, fuse: str) -> int:
    """The bytes of the workspace a training pass over ``[rows, channels]`` with ``fuse`` writes: oneDNN's
    fused ReLU keeps one bit or byte per element (asked of oneDNN itself); the others keep none."""
    if fuse != "relu":
        return 0
    size = library.workspace_query("jaxdl_onednn_batch_norm_workspace_bytes", rows, channels, FUSES.index(fuse))
    if size < 0:
        raise ValueError(f"oneDNN has no batch normalisation with a fused ReLU over [{rows}, {channels}]")
    return size


def _array(shape, dtype) -> jax.core.ShapedArray:
    return jax.core.ShapedArray(shape, dtype)


def _residual_shape(x, fuse):  # the residual, the output the backward pass reads, and the residual's gradient
    return x.shape if fuse == "add_relu" else (0,)


def _forward_abstract(x, scale, shift, residual, *, epsilon, fuse):
    channels = _array((x.shape[-1],), x.dtype)
    return (_array(x.shape, x.dtype), channels, channels, _array((workspace_bytes(*x.shape, fuse),), jnp.uint8))


def _backward_abstract(x, scale, shift, mean, var, dy, output, workspace, *, epsilon, fuse):
    channels = _array((x.shape[-1],), x.dtype)
    return _array(x.shape, x.dtype), channels, channels, _array(_residual_shape(x, fuse), x.dtype)


forward_p.def_abstract_eval(_forward_abstract)
backward_p.def_abstract_eval(_backward_abstract)


def _ffi(primitive, shapes, *args, epsilon, fuse):
    structs = tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in shapes)
    return jax.ffi.ffi_call(primitive.name, structs)(*args, epsilon=np.float32(epsilon), fuse=np.int64(FUSES.index(fuse)))


def _forward_call(epsilon, fuse, *args):
    return _ffi(forward_p, _forward_abstract(*args, epsilon=epsilon, fuse=fuse), *args, epsilon=epsilon, fuse=fuse)


def _backward_call(epsilon, fuse, *args):
    return _ffi(backward_p, _backward_abstract(*args, epsilon=epsilon, fuse=fuse), *args, epsilon=epsilon, fuse=fuse)


# The same computations in XLA, for a batch split across devices: sums over each device's rows, added across
# the batch's devices. oneDNN's workspace is zeros here (of the whole batch's workspace shape, from
# `result_shapes`): the backward pass recomputes the ReLU's mask from the input, the statistics, the scale and
# the shift, or from the output where a residual was added.
def _forward_summed(axes, epsilon, fuse, result_shapes, x, scale, shift, residual):
    rows = jax.lax.psum(x.shape[0], axes)
    mean = jax.lax.psum(jnp.sum(x, axis=0), axes) / rows
    var = jax.lax.psum(jnp.sum(jnp.square(x - mean[None]), axis=0), axes) / rows
    y = (x - mean[None]) * (scale * jax.lax.rsqrt(var + epsilon))[None] + shift[None]
    y = y + residual if fuse == "add_relu" else y
    return jnp.maximum(y, 0) if fuse else y, mean, var, jnp.zeros(result_shapes[3].shape, jnp.uint8)


def _backward_summed(axes, epsilon, fuse, result_shapes, x, scale, shift, mean, var, dy, output, workspace):
    rows = jax.lax.psum(x.shape[0], axes)
    inverse = jax.lax.rsqrt(var + epsilon)
    normalized = (x - mean[None]) * inverse[None]
    if fuse:  # the ReLU's gradient: through where its input was positive
        dy = jnp.where((output if fuse == "add_relu" else normalized * scale[None] + shift[None]) > 0, dy, 0)
    dshift = jax.lax.psum(jnp.sum(dy, axis=0), axes)
    dscale = jax.lax.psum(jnp.sum(dy * normalized, axis=0), axes)
    dx = (scale * inverse)[None] * (dy - dshift[None] / rows - normalized * (dscale / rows)[None])
    return dx, dscale, dshift, dy if fuse == "add_relu" else jnp.zeros((0,), x.dtype)


def _shardings(mesh, batch, shapes):  # [rows, channels] arrays follow the batch; the rest is whole everywhere
    return tuple(batch if len(s.shape) == 2 else partition.replicated(mesh) for s in shapes)


def _partitioned(call, summed, rule):
    def partition_(epsilon, fuse, mesh, arg_shapes, result_shapes):
        batch = partition.batch_sharding(mesh, arg_shapes[0])
        axes = batch.spec[0]
        local = (functools.partial(call, epsilon, fuse) if axes is None
                 else functools.partial(summed, axes, epsilon, fuse, result_shapes))
        return mesh, local, _shardings(mesh, batch, result_shapes), _shardings(mesh, batch, arg_shapes)

    def infer(epsilon, fuse, mesh, arg_shapes, result_shapes):
        return _shardings(mesh, partition.batch_sharding(mesh, arg_shapes[0]), result_shapes)
    return partition.rule(call, (0, 1), rule, partition_, infer)


# One partitioned pair per fuse: Shardy's rule names each operand's factors, and the empty operands of the
# fuses without a residual have none of the batch's.
def _rules(fuse: str) -> tuple[str, str]:
    r = "n c" if fuse == "add_relu" else "z"
    return f"n c, c, c, {r} -> n c, c, c, k", f"n c, c, c, c, c, n c, {r}, k -> n c, c, c, {r}"


_FORWARD = {fuse: _partitioned(_forward_call, _forward_summed, _rules(fuse)[0]) for fuse in FUSES}
_BACKWARD = {fuse: _partitioned(_backward_call, _backward_summed, _rules(fuse)[1]) for fuse in FUSES}
partition.register(forward_p, lambda *args, epsilon, fuse: _FORWARD[fuse](epsilon, fuse, *args),
                   lambda *args, epsilon, fuse: _forward_call(epsilon, fuse, *args), multiple_results=True)
partition.register(backward_p, lambda *args, epsilon, fuse: _BACKWARD[fuse](epsilon, fuse, *args),
                   lambda *args, epsilon, fuse: _backward_call(epsilon, fuse, *args), multiple_results=True)


# vmap: the mapped axis joins the channels, so that each mapped element has statistics of its own. oneDNN's
# workspace belongs to the folded call: it is not mapped, and the backward pass reads it as it is.
def _into_channels(value, dim, size):
    if value.ndim - (dim is not None) == 2:  # [rows, channels] -> [rows, size*channels]
        value = partition.to_front(value, dim, size)
        return value.transpose(1, 0, 2).reshape(value.shape[1], -1)
    if dim is None and value.dtype == jnp.uint8:  # the folded call's workspace
        return value
    value = partition.to_front(value, dim, size)  # [channels] -> [size*channels]; an empty operand stays empty
    return value.reshape(size * value.shape[1])


def _out_of_channels(value, size):
    if value.ndim == 2:
        return value.reshape(value.shape[0], size, -1).transpose(1, 0, 2), 0
    if value.dtype == jnp.uint8:
        return value, None
    return value.reshape(size, value.shape[0] // size), 0


def _batched(primitive):
    def rule(args, dims, *, epsilon, fuse):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        outputs = primitive.bind(*(_into_channels(a, d, size) for a, d in zip(args, dims)), epsilon=epsilon, fuse=fuse)
        values, out_dims = zip(*(_out_of_channels(o, size) for o in outputs))
        return list(values), list(out_dims)
    return rule


batching.primitive_batchers[forward_p] = _batched(forward_p)
batching.primitive_batchers[backward_p] = _batched(backward_p)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _normalize_rows(x, scale, shift, residual, epsilon, fuse):
    return tuple(forward_p.bind(x, scale, shift, residual, epsilon=epsilon, fuse=fuse)[:3])


def _normalize_forward(x, scale, shift, residual, epsilon, fuse):
    # symbolic_zeros wraps the primal arguments
    x, scale, shift, residual = x.value, scale.value, shift.value, residual.value
    y, mean, var, workspace = forward_p.bind(x, scale, shift, residual, epsilon=epsilon, fuse=fuse)
    output = y if fuse == "add_relu" else jnp.zeros((0,), x.dtype)  # where the ReLU's mask comes from
    return (y, mean, var), (x, scale, shift, mean, var, output, workspace)


def _normalize_backward(epsilon, fuse, residuals, cotangents):
    x, scale, shift, mean, var, output, workspace = residuals
    dy, dmean, dvar = (jnp.zeros_like(x) if isinstance(cotangents[0], SymbolicZero) else cotangents[0], *cotangents[1:])
    dx, dscale, dshift, dresidual = backward_p.bind(x, scale, shift, mean, var, dy, output, workspace,
                                                    epsilon=epsilon, fuse=fuse)
    rows = x.shape[0]
    if not isinstance(dmean, SymbolicZero):
        dx = dx + dmean[None] / rows
    if not isinstance(dvar, SymbolicZero):
        dx = dx + (x - mean[None]) * (2 * dvar / rows)[None]
    return dx, dscale, dshift, dresidual


_normalize_rows.defvjp(_normalize_forward, _normalize_backward, symbolic_zeros=True)


def normalize(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float, relu: bool = False,
              residual: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x: [..., channels]`` normalised over every axis but the last with the batch's statistics, then scaled
    and shifted per channel, by oneDNN: returns ``(y, mean, biased variance)``; with ``relu`` the output is
    ``relu(y)``, or ``relu(y + residual)`` with a ``residual`` of x's shape (the end of a residual block)."""
    if residual is not None and not relu:
        raise ValueError("normalize adds a residual only before a ReLU (relu=True); add it after the call otherwise")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"the residual must have the input's shape {x.shape}, got {residual.shape}")
    fuse = "add_relu" if residual is not None else "relu" if relu else ""
    rows = x.reshape(-1, x.shape[-1])
    added = residual.reshape(rows.shape) if residual is not None else jnp.zeros((0,), x.dtype)
    y, mean, var = _normalize_rows(rows, scale, shift, added, float(epsilon), fuse)
    return y.reshape(x.shape), mean, var


def supports(x: jax.Array, residual: jax.Array | None = None) -> bool:
    """Whether oneDNN normalises this float32 batch ``[..., channels]`` (with this float32 ``residual``) here
    (`library.may_run`); the scale and shift must be float32 too."""
    arrays = (x,) if residual is None else (x, residual)
    return x.ndim >= 2 and all(a.dtype == jnp.float32 for a in arrays) and library.may_run(*arrays)
