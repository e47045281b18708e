"""The ``"onednn"`` lowering of `jaxdl.nn.conv.conv2d`: oneDNN's convolution kernels as XLA custom calls.

Three custom calls (conv.cc) compute the forward pass, the gradient of the image (backward data) and the
gradient of the kernel (backward weights) on NHWC images and HWIO kernels. Each is a JAX primitive, bilinear in
its two operands, whose transposes are the other two: ``conv(x, w)`` transposed in ``x`` is
``backward_data(·, w)`` and in ``w`` is ``backward_weights(x, ·)``, and so on around the three, so `jax.grad`,
`jax.linearize`, `jax.jvp` and derivatives of any order all run oneDNN's kernels, and the autotuner
(`jaxdl.nn.lowering.combine`) may pair oneDNN's gradient of one argument with another lowering's forward pass.

Under `jax.vmap` a mapped batch folds into the images' batch, and a mapped kernel (vmapped trials, each with
its own weights) folds into the convolution's groups: ``T`` trials of a ``g``-group convolution are one
``T*g``-group convolution over the trials' channels side by side, one oneDNN call for all of them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching

from jaxdl.nn.lowering.onednn import library, partition
from jaxdl.nn.lowering.onednn.cpu import has_bf16

Pairs = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A convolution's static arguments: strides, explicit ``(before, after)`` paddings, kernel dilation, groups."""

    strides: tuple[int, int]
    padding: Pairs
    dilation: tuple[int, int]
    groups: int = 1

    def window(self) -> np.ndarray:
        """The custom calls' ``window`` attribute: strides, paddings (top, bottom, left, right), dilation."""
        (pt, pb), (pl, pr) = self.padding
        return np.array([*self.strides, pt, pb, pl, pr, *self.dilation], np.int64)

    def output_hw(self, image_hw: tuple[int, ...], kernel_hw: tuple[int, ...]) -> tuple[int, int]:
        """The output's height and width for an image and kernel of these spatial sizes."""
        h, w = (  # floor((n + padding - dilated kernel) / stride) + 1, as XLA and oneDNN compute it
            (n + lo + hi - (k - 1) * d - 1) // s + 1
            for n, (lo, hi), k, d, s in zip(image_hw, self.padding, kernel_hw, self.dilation, self.strides))
        return h, w

    def grouped(self, times: int) -> Geometry:
        """The same window with ``times`` as many groups (``times`` convolutions side by side)."""
        return dataclasses.replace(self, groups=self.groups * times)


forward_p = Primitive("jaxdl_onednn_conv_forward")
backward_data_p = Primitive("jaxdl_onednn_conv_backward_data")
backward_weights_p = Primitive("jaxdl_onednn_conv_backward_weights")


def _shape(value) -> tuple[int, ...]:
    """The shape of a transposed operand: an array, or the placeholder (with an ``aval``) the transpose fills."""
    return value.shape if hasattr(value, "shape") else value.aval.shape


def forward(x: jax.Array, kernel: jax.Array, geometry: Geometry) -> jax.Array:
    """``conv(x, kernel)``: ``[n, h, w, c] x [kh, kw, c/groups, o] -> [n, oh, ow, o]``."""
    return forward_p.bind(x, kernel, geometry=geometry)


def backward_data(dy: jax.Array, kernel: jax.Array, geometry: Geometry, image_hw: tuple[int, int]) -> jax.Array:
    """The gradient of ``conv(x, kernel)`` in ``x`` applied to ``dy``: an image ``[n, *image_hw, c]``."""
    return backward_data_p.bind(dy, kernel, geometry=geometry, image_hw=tuple(image_hw))


def backward_weights(x: jax.Array, dy: jax.Array, geometry: Geometry, kernel_hw: tuple[int, int]) -> jax.Array:
    """The gradient of ``conv(x, kernel)`` in ``kernel`` applied to ``dy``: a kernel ``[*kernel_hw, c/groups, o]``."""
    return backward_weights_p.bind(x, dy, geometry=geometry, kernel_hw=tuple(kernel_hw))


def _forward_abstract(x, kernel, *, geometry):
    n, h, w, _ = x.shape
    return jax.core.ShapedArray((n, *geometry.output_hw((h, w), kernel.shape[:2]), kernel.shape[3]), x.dtype)


def _backward_data_abstract(dy, kernel, *, geometry, image_hw):
    return jax.core.ShapedArray((dy.shape[0], *image_hw, kernel.shape[2] * geometry.groups), dy.dtype)


def _backward_weights_abstract(x, dy, *, geometry, kernel_hw):
    return jax.core.ShapedArray((*kernel_hw, x.shape[3] // geometry.groups, dy.shape[3]), x.dtype)


forward_p.def_abstract_eval(_forward_abstract)
backward_data_p.def_abstract_eval(_backward_data_abstract)
backward_weights_p.def_abstract_eval(_backward_weights_abstract)

# Each primitive is bilinear; its transposes are the other two (and its own JVP is itself, by `defbilinear`).
ad.defbilinear(
    forward_p,
    lambda ct, x, kernel, *, geometry: backward_data(ct, kernel, geometry, _shape(x)[1:3]),
    lambda ct, x, kernel, *, geometry: backward_weights(x, ct, geometry, _shape(kernel)[:2]))
ad.defbilinear(
    backward_data_p,
    lambda ct, dy, kernel, *, geometry, image_hw: forward(ct, kernel, geometry),
    lambda ct, dy, kernel, *, geometry, image_hw: backward_weights(ct, dy, geometry, _shape(kernel)[:2]))
ad.defbilinear(
    backward_weights_p,
    lambda ct, x, dy, *, geometry, kernel_hw: backward_data(dy, ct, geometry, _shape(x)[1:3]),
    lambda ct, x, dy, *, geometry, kernel_hw: forward(x, ct, geometry))


def _custom_call(target: str, shape: tuple[int, ...], dtype, geometry: Geometry, a: jax.Array, b: jax.Array):
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype))(
        a, b, window=geometry.window(), groups=np.int64(geometry.groups))


def _forward_call(geometry, x, kernel):
    return _custom_call(forward_p.name, _forward_abstract(x, kernel, geometry=geometry).shape, x.dtype, geometry, x, kernel)


def _backward_data_call(geometry, image_hw, dy, kernel):
    shape = _backward_data_abstract(dy, kernel, geometry=geometry, image_hw=image_hw).shape
    return _custom_call(backward_data_p.name, shape, dy.dtype, geometry, dy, kernel)


def _backward_weights_call(geometry, kernel_hw, x, dy):
    shape = _backward_weights_abstract(x, dy, geometry=geometry, kernel_hw=kernel_hw).shape
    return _custom_call(backward_weights_p.name, shape, x.dtype, geometry, x, dy)


def _partition_weights(geometry, kernel_hw, mesh, arg_shapes, _):
    """The kernel gradient is a sum over the batch: each device sums its part, then the batch's devices add."""
    batch = partition.batch_sharding(mesh, arg_shapes[0])
    axes = batch.spec[0]

    def local(x, dy):
        dw = _backward_weights_call(geometry, kernel_hw, x, dy)
        return jax.lax.psum(dw, axes) if axes is not None else dw
    return mesh, local, partition.replicated(mesh), (batch, batch)


_forward_partitioned = partition.batch_local(_forward_call, (0,), "n h w c, kh kw i o -> n oh ow o", "br", "b")
_backward_data_partitioned = partition.batch_local(_backward_data_call, (0, 1), "n oh ow o, kh kw i o -> n h w c",
                                                   "br", "b")
_backward_weights_partitioned = partition.rule(_backward_weights_call, (0, 1), "n h w c, n oh ow o -> kh kw i o",
                                               _partition_weights, lambda *a: partition.replicated(a[-3]))

partition.register(forward_p, lambda x, kernel, *, geometry: _forward_partitioned(geometry, x, kernel),
                   lambda x, kernel, *, geometry: _forward_call(geometry, x, kernel))
partition.register(
    backward_data_p,
    lambda dy, kernel, *, geometry, image_hw: _backward_data_partitioned(geometry, image_hw, dy, kernel),
    lambda dy, kernel, *, geometry, image_hw: _backward_data_call(geometry, image_hw, dy, kernel))
partition.register(
    backward_weights_p,
    lambda x, dy, *, geometry, kernel_hw: _backward_weights_partitioned(geometry, kernel_hw, x, dy),
    lambda x, dy, *, geometry, kernel_hw: _backward_weights_call(geometry, kernel_hw, x, dy))


# vmap. An image-like operand (NHWC) mapped along axis ``d`` folds into the batch or, beside a mapped kernel,
# into the channels; a mapped kernel (HWIO) folds into the output channels of a grouped convolution.
def _trials_into_last(stacked):
    """``[t, a, b, c, d] -> [a, b, c, t*d]``: trials side by side on the last axis (an image's channels, a
    kernel's outputs), trial-major, as a ``t``-fold grouped convolution reads them."""
    t, a, b, c, d = stacked.shape
    return stacked.transpose(1, 2, 3, 0, 4).reshape(a, b, c, t * d)


def _last_into_trials(value, t):
    """The inverse of `_trials_into_last`: ``[a, b, c, t*d] -> [t, a, b, c, d]``."""
    a, b, c, td = value.shape
    return value.reshape(a, b, c, t, td // t).transpose(3, 0, 1, 2, 4)


def _fold_batch(images, dim):  # [.., t at dim, ..] -> [t*n, h, w, c]
    images = jnp.moveaxis(images, dim, 0)
    return images.reshape(-1, *images.shape[2:]), images.shape[0]


def _forward_batched(args, dims, *, geometry):
    (x, kernel), (dx, dk) = args, dims
    if dk is None:  # the same kernel for every element: one convolution over the folded batch
        folded, t = _fold_batch(x, dx)
        y = forward(folded, kernel, geometry)
        return y.reshape(t, -1, *y.shape[1:]), 0
    t = kernel.shape[dk]
    y = forward(_trials_into_last(partition.to_front(x, dx, t)), _trials_into_last(partition.to_front(kernel, dk, t)),
                geometry.grouped(t))
    return _last_into_trials(y, t), 0


def _backward_data_batched(args, dims, *, geometry, image_hw):
    (dy, kernel), (ddy, dk) = args, dims
    if dk is None:
        folded, t = _fold_batch(dy, ddy)
        dx = backward_data(folded, kernel, geometry, image_hw)
        return dx.reshape(t, -1, *dx.shape[1:]), 0
    t = kernel.shape[dk]
    dx = backward_data(_trials_into_last(partition.to_front(dy, ddy, t)), _trials_into_last(partition.to_front(kernel, dk, t)),
                       geometry.grouped(t), image_hw)
    return _last_into_trials(dx, t), 0


def _backward_weights_batched(args, dims, *, geometry, kernel_hw):
    (x, dy), (dx, ddy) = args, dims
    t = x.shape[dx] if dx is not None else dy.shape[ddy]
    dw = backward_weights(_trials_into_last(partition.to_front(x, dx, t)), _trials_into_last(partition.to_front(dy, ddy, t)),
                          geometry.grouped(t), kernel_hw)
    return _last_into_trials(dw, t), 0


batching.primitive_batchers[forward_p] = _forward_batched
batching.primitive_batchers[backward_data_p] = _backward_data_batched
batching.primitive_batchers[backward_weights_p] = _backward_weights_batched


def supports(x: jax.Array, kernel: jax.Array) -> bool:
    """Whether oneDNN computes this convolution here (`library.may_run`), for both operands float32 (or both
    bfloat16 on a CPU with AVX512_BF16)."""
    if x.dtype != kernel.dtype or x.dtype not in (jnp.float32, jnp.bfloat16):
        return False
    if x.dtype == jnp.bfloat16 and not has_bf16():
        return False
    return library.may_run(x, kernel)


@dataclasses.dataclass(frozen=True)
class OneDNNConv:
    """``conv2d`` by oneDNN for fixed static arguments, called as ``(x, kernel)``: a candidate lowering."""

    geometry: Geometry

    def __call__(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        return forward(x, kernel, self.geometry)
