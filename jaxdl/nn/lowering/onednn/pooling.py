"""Max pooling by oneDNN (pooling.cc): forward, and a backward pass that reads the forward's argmax workspace.

XLA:CPU computes a max pool's gradient as a select-and-scatter, or, for jaxdl's tiled 2x2 pools, as the
tie-sharing reduction of ``max``'s JVP; either costs several times the pooling itself. `max_pool` is a
`jax.custom_vjp` whose training forward pass keeps oneDNN's workspace (one byte per output element for windows
under 256 elements) and whose backward pass routes each output gradient to its window's maximum. Where a
window holds several equal maxima the whole gradient goes to the first (in row-major order), as PyTorch's and
XLA's select-and-scatter do; `jnp.max`'s JVP would share it among them. Both are subgradients.

Under `jax.vmap` mapped axes fold into the batch; over a device mesh each device pools its part of the batch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import batching

from jaxdl.nn.lowering.onednn import library, partition

Pairs = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Window:
    """A max pool's static arguments for one image size: the window, strides, explicit ``(before, after)``
    paddings, and the image's height and width."""

    window: tuple[int, int]
    strides: tuple[int, int]
    padding: Pairs
    image_hw: tuple[int, int]

    def attribute(self) -> np.ndarray:
        """The custom calls' ``window`` attribute: kh, kw, sh, sw, top, bottom, left, right."""
        (pt, pb), (pl, pr) = self.padding
        return np.array([*self.window, *self.strides, pt, pb, pl, pr], np.int64)

    def output_hw(self) -> tuple[int, int]:
        """The pooled height and width (``floor((n + padding - window) / stride) + 1``, as XLA computes it)."""
        h, w = ((n + lo + hi - k) // s + 1
                for n, (lo, hi), k, s in zip(self.image_hw, self.padding, self.window, self.strides))
        return h, w


@functools.cache
def workspace_bytes(window: Window, channels: int) -> int:
    """The bytes of oneDNN's training workspace for one image (asked of oneDNN itself)."""
    size = library.workspace_query("jaxdl_onednn_max_pool_workspace_bytes", *window.image_hw, channels,
                                   *window.output_hw(), window=window.attribute())
    if size < 0:
        raise ValueError(f"oneDNN has no max pooling for {window} over {channels} channels")
    return size


forward_p = Primitive("jaxdl_onednn_max_pool_forward")
forward_p.multiple_results = True
backward_p = Primitive("jaxdl_onednn_max_pool_backward")


def _forward_shapes(x, *, window: Window, training: bool):
    n, _, _, c = x.shape
    workspace = workspace_bytes(window, c) if training else 0
    return (jax.core.ShapedArray((n, *window.output_hw(), c), x.dtype),
            jax.core.ShapedArray((n, workspace), jnp.uint8))


def _backward_shape(dy, workspace, *, window: Window):
    return jax.core.ShapedArray((dy.shape[0], *window.image_hw, dy.shape[3]), dy.dtype)


forward_p.def_abstract_eval(_forward_shapes)
backward_p.def_abstract_eval(_backward_shape)


def _forward_call(window: Window, training: bool, x):
    shapes = tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in _forward_shapes(x, window=window, training=training))
    return jax.ffi.ffi_call(forward_p.name, shapes)(x, window=window.attribute(), training=np.int64(training))


def _backward_call(window: Window, dy, workspace):
    shape = _backward_shape(dy, workspace, window=window)
    return jax.ffi.ffi_call(backward_p.name, jax.ShapeDtypeStruct(shape.shape, shape.dtype))(
        dy, workspace, window=window.attribute())


_forward_partitioned = partition.batch_local(_forward_call, (0, 1), "n h w c -> n oh ow c, n k", "b", "bb")
_backward_partitioned = partition.batch_local(_backward_call, (0,), "n oh ow c, n k -> n h w c", "bb", "b")
partition.register(forward_p, lambda x, *, window, training: _forward_partitioned(window, training, x),
                   lambda x, *, window, training: _forward_call(window, training, x), multiple_results=True)
partition.register(backward_p, lambda dy, workspace, *, window: _backward_partitioned(window, dy, workspace),
                   lambda dy, workspace, *, window: _backward_call(window, dy, workspace))


# vmap: every mapped axis folds into the batch (each image pools alone), and unfolds after.
def _folded(value, dim, size):
    value = partition.to_front(value, dim, size)
    return value.reshape(-1, *value.shape[2:])


def _forward_batched(args, dims, *, window, training):
    (x,), (dim,) = args, dims
    t = x.shape[dim]
    outputs = forward_p.bind(_folded(x, dim, t), window=window, training=training)
    # Explicit sizes: inference's workspace has no bytes, so -1 could not be inferred from it.
    return [o.reshape(t, o.shape[0] // t, *o.shape[1:]) for o in outputs], [0, 0]


def _backward_batched(args, dims, *, window):
    (dy, workspace), (ddy, dws) = args, dims
    t = dy.shape[ddy] if ddy is not None else workspace.shape[dws]
    dx = backward_p.bind(_folded(dy, ddy, t), _folded(workspace, dws, t), window=window)
    return dx.reshape(t, dx.shape[0] // t, *dx.shape[1:]), 0


batching.primitive_batchers[forward_p] = _forward_batched
batching.primitive_batchers[backward_p] = _backward_batched


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, window: Window) -> jax.Array:
    return forward_p.bind(x, window=window, training=False)[0]


def _max_pool_forward(x, window):
    y, workspace = forward_p.bind(x, window=window, training=True)
    return y, workspace


def _max_pool_backward(window, workspace, dy):
    return (backward_p.bind(dy, workspace, window=window),)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: Pairs) -> jax.Array:
    """The maximum over each ``window`` of ``x: [batch, h, w, c]`` moved by ``strides``, with explicit
    ``((top, bottom), (left, right))`` paddings that never win (minus infinity), by oneDNN."""
    return _max_pool(x, Window(tuple(window), tuple(strides), tuple(map(tuple, padding)), x.shape[1:3]))


def supports(x: jax.Array) -> bool:
    """Whether oneDNN pools this float32 image batch here (`library.may_run`)."""
    return x.ndim == 4 and x.dtype == jnp.float32 and library.may_run(x)
