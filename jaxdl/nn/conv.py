"""2-D convolution layer (NHWC images, HWIO kernels).

The convolution of an image ``I`` with an ``m x m`` kernel ``K`` is
``(I * K)(i, j) = sum_u sum_v I(i + u, j + v) K(u, v)`` (a cross-correlation, as in every framework);
with channels the sum also runs over input channels, and ``stride`` and ``padding`` choose which ``(i, j)``.

How the sum is computed (XLA's own convolution, or on a CPU oneDNN's kernels or the patches lowering, whichever
was measured fastest for this shape and pass) is not a layer field: `jaxdl.nn.lowering` decides it for every
convolution at once.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.initializers import Initializer, get_initializer
from jaxdl.nn.lowering.onednn import conv as onednn_conv
from jaxdl.nn.lowering.patches import conv2d_patches, depthwise_shifts, explicit_padding
from jaxdl.nn.lowering.select import lowered
from jaxdl.nn.padding import BORDER_MODES, Padding, normalize_padding, pad_border, pair


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
    depthwise: bool = False,
) -> jax.Array:
    """Convolve ``x: [batch, height, width, in]`` with ``kernel: [kh, kw, in, out]``.

    Returns ``[batch, out_height, out_width, out]``; with ``"VALID"`` the output is
    ``floor((H - dilation*(kh-1) - 1) / stride) + 1`` high, with ``"SAME"`` it is ``ceil(H / stride)``.
    ``padding`` takes every form `flax.linen.Conv` takes for images (`jaxdl.nn.padding`).
    ``depthwise`` convolves each channel with its own filter (``kernel: [kh, kw, 1, in]``, out = in): the
    ``kh*kw`` shifted views are weighted and summed, which XLA:CPU runs 6-15x faster than its grouped
    convolution (benchmarks/RESULTS.md). `jaxdl.nn.lowering` chooses how it is computed; every lowering
    gives the same values up to float summation order.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"conv2d expects x [batch, h, w, c] and kernel [kh, kw, in, out]; got {x.shape} and {kernel.shape}")
    expected_in = 1 if depthwise else x.shape[-1]
    if kernel.shape[2] != expected_in or (depthwise and kernel.shape[3] != x.shape[-1]):
        want = f"[kh, kw, 1, {x.shape[-1]}]" if depthwise else f"[kh, kw, {x.shape[-1]}, out]"
        raise ValueError(f"conv2d: input has {x.shape[-1]} channels, so the {'depthwise ' if depthwise else ''}kernel "
                         f"must be {want}; got {kernel.shape}")
    strides, dilation, pad = pair(strides), pair(dilation), normalize_padding(padding, border_modes=True)
    kernel_hw = kernel.shape[:2]
    if isinstance(pad, str) and pad in BORDER_MODES:  # wrapped or mirrored borders, then a VALID convolution (flax.linen.Conv's rule)
        x, pad = pad_border(x, pad, kernel_hw, dilation), "VALID"
    pads = explicit_padding(pad, x.shape[1:3], kernel_hw, strides, dilation)
    for axis, name in ((0, "height"), (1, "width")):
        padded = x.shape[1 + axis] + sum(pads[axis])
        span = (kernel_hw[axis] - 1) * dilation[axis] + 1
        if padded < span:
            raise ValueError(f"conv2d: input {name} {x.shape[1 + axis]} (padded to {padded}) is smaller than the "
                             f"kernel span {span}; use padding='SAME', a smaller kernel or larger inputs")
    lowerings = {
        "xla": functools.partial(_conv2d_xla, strides=strides, padding=pad, dilation=dilation, depthwise=depthwise),
        "patches": functools.partial(depthwise_shifts if depthwise else conv2d_patches, strides=strides,
                                     padding=pad, dilation=dilation),
    }
    rule = "patches"
    if onednn_conv.supports(x, kernel):
        geometry = onednn_conv.Geometry(strides, tuple(map(tuple, pads)), dilation, x.shape[-1] if depthwise else 1)
        lowerings["onednn"] = onednn_conv.OneDNNConv(geometry)
        rule = "onednn"
    params = (strides, pad if isinstance(pad, str) else tuple(map(tuple, pad)), dilation, depthwise)
    return lowered("conv2d", lowerings, params, cpu_rule=rule)(x, kernel)



def _conv2d_xla(x, kernel, strides, padding, dilation, depthwise):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1] if depthwise else 1,
    )


class Conv2D(nn.Module):
    """A learned 2-D convolution: ``y = conv2d(x, kernel) + bias``.

    ``x: [batch, height, width, in_channels] -> [batch, out_height, out_width, features]``. Parameters are
    ``kernel: [kh, kw, in, features]`` and ``bias: [features]`` (the names and layout of ``flax.linen.Conv``,
    so weights move between the two). ``depthwise`` filters each channel on its own (``features`` must equal
    the input channels; kernel ``[kh, kw, 1, features]``, as ``flax.linen.Conv`` with ``feature_group_count``
    equal to the channels). ``dtype`` is the compute dtype; parameters stay in ``param_dtype``.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    kernel_init: str | Initializer = "he_normal"
    depthwise: bool = False
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = pair(self.kernel_size)
        kernel = self.param(
            "kernel", get_initializer(self.kernel_init), (kh, kw, 1 if self.depthwise else x.shape[-1], self.features),
            self.param_dtype,
        )
        dtype = self.dtype or x.dtype
        y = conv2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, self.dilation, self.depthwise)
        return add_channel_bias(self, y) if self.use_bias else y


def add_channel_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    """``y + bias`` per output channel, with ``bias: [module.features]`` (zeros at init, in ``module.param_dtype``)
    created in ``module``'s scope: the bias of every jaxdl convolution layer."""
    bias = module.param("bias", jax.nn.initializers.zeros, (module.features,), module.param_dtype)
    return y + bias.astype(y.dtype).reshape(1, 1, 1, module.features)
