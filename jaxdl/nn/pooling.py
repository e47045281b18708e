"""Max and average pooling over the spatial axes of NHWC images.

When the window tiles the image exactly (window == stride, no padding: the usual 2x2/2 pool) pooling is a
reshape and a reduction. On XLA:CPU that is several times faster than the generic ``reduce_window`` path,
whose max-pool gradient lowers to a slow ``select_and_scatter``; the values are identical. On a CPU where
oneDNN's kernels load (`jaxdl.nn.lowering.onednn`), max pooling of every shape runs on oneDNN instead, forward
and backward (lowering modes ``"auto"`` and ``"onednn"``; ``"xla"`` and ``"patches"`` keep XLA's path).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.lowering.onednn import pooling as onednn_pooling
from jaxdl.nn.padding import Padding, normalize_padding, pair


def _tiles_exactly(window: tuple[int, int], strides: tuple[int, int], padding) -> bool:
    return window == strides and padding == "VALID"


def _tiled(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    b, h, w, c = x.shape
    oh, ow = h // window[0], w // window[1]
    x = x[:, : oh * window[0], : ow * window[1], :]
    return x.reshape(b, oh, window[0], ow, window[1], c)


def _check(x: jax.Array, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects [batch, height, width, channels], got shape {x.shape}")


def _onednn_max_pool(x, window, strides, pad):
    if not onednn_pooling.supports(x):
        return None
    if isinstance(pad, str):
        pad = jax.lax.padtype_to_pads(x.shape[1:3], window, strides, pad)
    return onednn_pooling.max_pool(x, window, strides, pad)


def _pool(x, window, strides, padding, name, tiled_reduce, generic, kernel=None):
    _check(x, name)
    window, strides, pad = pair(window), pair(strides if strides is not None else window), normalize_padding(padding)
    if kernel is not None and (pooled := kernel(x, window, strides, pad)) is not None:
        return pooled
    if _tiles_exactly(window, strides, pad):
        return tiled_reduce(_tiled(x, window), axis=(2, 4))
    return generic(x, window, strides, pad)


def max_pool(
    x: jax.Array,
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """Maximum over each ``window`` of ``x: [batch, h, w, c]``, moved by ``strides`` (default: the window)."""
    return _pool(x, window, strides, padding, "max_pool", jnp.max, nn.max_pool, _onednn_max_pool)


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int] = 2,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """Mean over each ``window`` of ``x: [batch, h, w, c]``; with padding, padded zeros are not counted."""
    return _pool(x, window, strides, padding, "avg_pool", jnp.mean,
                 lambda x, w, s, p: nn.avg_pool(x, w, s, p, count_include_pad=False))


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes: ``[batch, h, w, c] -> [batch, c]``."""
    _check(x, "global_avg_pool")
    return jnp.mean(x, axis=(1, 2))


def get_pool(name: str) -> Callable[..., jax.Array]:
    """Return ``max_pool`` or ``avg_pool`` by name (``"max"``/``"avg"``), naming the valid ones otherwise."""
    pools = {"max": max_pool, "avg": avg_pool, "average": avg_pool}
    if name not in pools:
        raise ValueError(f"unknown pooling {name!r}; valid names are {sorted(pools)}")
    return pools[name]
