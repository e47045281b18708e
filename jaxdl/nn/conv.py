"""2-D convolution layer (NHWC images, HWIO kernels).

The course defines the convolution of an image ``I`` with an ``m x m`` kernel ``K`` as
``(I * K)(i, j) = sum_u sum_v I(i + u, j + v) K(u, v)`` (a cross-correlation, as in every framework);
with channels the sum also runs over input channels, and ``stride`` and ``padding`` choose which ``(i, j)``.

Two lowerings compute the same sum. ``"xla"`` is the backend's native convolution. ``"patches"`` gathers
the ``kh*kw`` shifted views of the image side by side (im2col by slicing) and does one matmul; its
gradients are a matmul and pads/adds of slices. Which trains faster on XLA:CPU depends on the CPU and the
shape: patches won on every layer of a 2-core AVX2 EPYC (1.1-5x), while an AVX-512 Xeon runs XLA's own
convolution faster on the wide ones (benchmarks/RESULTS.md), except its kernel gradient, 4-5x slower than
its forward pass. So ``"auto"`` keeps native convolutions on GPU/TPU and, on CPU, times both lowerings for
each shape and each pass (forward, input gradient, kernel gradient) once per machine and runs each pass
through the faster one (`jaxdl.nn.autotune`; patches throughout when measuring is off).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn import autotune
from jaxdl.nn.initializers import Initializer, get_initializer

Padding = str | int | Sequence[tuple[int, int]]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {value!r}")
    return value  # type: ignore[return-value]


def _padding(padding: Padding) -> str | list[tuple[int, int]]:
    if isinstance(padding, str):
        upper = padding.upper()
        if upper not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or ((top, bottom), (left, right)); got {padding!r}")
        return upper
    if isinstance(padding, int):
        return [(padding, padding), (padding, padding)]
    return [tuple(p) for p in padding]  # type: ignore[misc]


IMPLEMENTATIONS = ("auto", "xla", "patches")


def _explicit_padding(padding: str | list, size: tuple[int, int], kernel: tuple[int, int],
                      strides: tuple[int, int], dilation: tuple[int, int]) -> list[tuple[int, int]]:
    if padding == "VALID":
        return [(0, 0), (0, 0)]
    if padding == "SAME":  # XLA's rule: output ceil(n / s), the odd pixel of padding goes after
        pads = []
        for n, k, s, d in zip(size, kernel, strides, dilation):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    return list(padding)


def _shifted_views(x, kernel_hw, strides, padding, dilation) -> tuple[list[jax.Array], int, int]:
    """The ``kh*kw`` strided views of the padded image that meet kernel tap (u, v), row-major, and the output size."""
    kh, kw = kernel_hw
    (pt, pb), (pl, pr) = _explicit_padding(padding, x.shape[1:3], (kh, kw), strides, dilation)
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    h, w = x.shape[1:3]
    oh = (h - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (w - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    views = [
        x[:, u * dilation[0]: u * dilation[0] + (oh - 1) * strides[0] + 1: strides[0],
             v * dilation[1]: v * dilation[1] + (ow - 1) * strides[1] + 1: strides[1], :]
        for u in range(kh) for v in range(kw)
    ]
    return views, oh, ow


def _conv2d_patches(x, kernel, strides, padding, dilation):
    kh, kw, cin, cout = kernel.shape
    views, oh, ow = _shifted_views(x, (kh, kw), strides, padding, dilation)
    # Channel-last concatenation orders columns (u, v, c), matching kernel.reshape(kh*kw*cin, cout).
    patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    y = patches.reshape(x.shape[0] * oh * ow, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return y.reshape(x.shape[0], oh, ow, cout)


def _depthwise_shifts(x, kernel, strides, padding, dilation):
    kh, kw = kernel.shape[:2]
    views, _, _ = _shifted_views(x, (kh, kw), strides, padding, dilation)
    taps = kernel.reshape(kh * kw, 1, 1, 1, -1)
    return sum(view * taps[i] for i, view in enumerate(views))


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
    implementation: str = "auto",
    depthwise: bool = False,
) -> jax.Array:
    """Convolve ``x: [batch, height, width, in]`` with ``kernel: [kh, kw, in, out]``.

    Returns ``[batch, out_height, out_width, out]``; with ``"VALID"`` the output is
    ``floor((H - dilation*(kh-1) - 1) / stride) + 1`` high, with ``"SAME"`` it is ``ceil(H / stride)``.
    ``depthwise`` convolves each channel with its own filter (``kernel: [kh, kw, 1, in]``, out = in): the
    ``kh*kw`` shifted views are weighted and summed, which XLA:CPU runs 6-15x faster than its grouped
    convolution (benchmarks/RESULTS.md). ``implementation`` is ``"xla"``, ``"patches"`` or ``"auto"``
    (native on GPU/TPU; on CPU the faster of the two for each pass of this shape, measured once per
    machine by `jaxdl.nn.autotune`); all give the same values up to float summation order.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"conv2d expects x [batch, h, w, c] and kernel [kh, kw, in, out]; got {x.shape} and {kernel.shape}")
    expected_in = 1 if depthwise else x.shape[-1]
    if kernel.shape[2] != expected_in or (depthwise and kernel.shape[3] != x.shape[-1]):
        want = f"[kh, kw, 1, {x.shape[-1]}]" if depthwise else f"[kh, kw, {x.shape[-1]}, out]"
        raise ValueError(f"conv2d: input has {x.shape[-1]} channels, so the {'depthwise ' if depthwise else ''}kernel "
                         f"must be {want}; got {kernel.shape}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown conv implementation {implementation!r}; valid ones are {list(IMPLEMENTATIONS)}")
    strides, dilation, pad = _pair(strides), _pair(dilation), _padding(padding)
    kernel_hw = kernel.shape[:2]
    pads = _explicit_padding(pad, x.shape[1:3], kernel_hw, strides, dilation)
    for axis, name in ((0, "height"), (1, "width")):
        padded = x.shape[1 + axis] + sum(pads[axis])
        span = (kernel_hw[axis] - 1) * dilation[axis] + 1
        if padded < span:
            raise ValueError(f"conv2d: input {name} {x.shape[1 + axis]} (padded to {padded}) is smaller than the "
                             f"kernel span {span}; use padding='SAME', a smaller kernel or larger inputs")
    lowerings = {
        "xla": functools.partial(_conv2d_xla, strides=strides, padding=pad, dilation=dilation, depthwise=depthwise),
        "patches": functools.partial(_depthwise_shifts if depthwise else _conv2d_patches, strides=strides,
                                     padding=pad, dilation=dilation),
    }
    if implementation == "auto":
        if jax.default_backend() != "cpu":
            implementation = "xla"
        else:
            params = (strides, pad if isinstance(pad, str) else tuple(map(tuple, pad)), dilation, depthwise)
            return autotune.tuned("conv2d", lowerings, params, default="patches")(x, kernel)
    return lowerings[implementation](x, kernel)


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
    implementation: str = "auto"
    depthwise: bool = False
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        kernel = self.param(
            "kernel", get_initializer(self.kernel_init), (kh, kw, 1 if self.depthwise else x.shape[-1], self.features),
            self.param_dtype,
        )
        dtype = self.dtype or x.dtype
        y = conv2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, self.dilation, self.implementation,
                   self.depthwise)
        return add_channel_bias(self, y) if self.use_bias else y


def add_channel_bias(module: nn.Module, y: jax.Array) -> jax.Array:
    """``y + bias`` per output channel, with ``bias: [module.features]`` (zeros at init, in ``module.param_dtype``)
    created in ``module``'s scope: the bias of every jaxdl convolution layer."""
    bias = module.param("bias", jax.nn.initializers.zeros, (module.features,), module.param_dtype)
    return y + bias.astype(y.dtype).reshape(1, 1, 1, module.features)
