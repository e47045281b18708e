"""2-D transposed convolution layer (NHWC images, HWIO kernels), the upsampling of U-Nets and DCGAN generators.

A stride-``s`` transposed convolution is the convolution of the input *dilated* by ``s`` (``s - 1`` zeros
between neighbouring pixels) with the kernel: ``lax.conv_transpose`` and ``flax.linen.ConvTranspose``
compute it so, and XLA:CPU runs that as a convolution over an image that is ``s*s`` times larger and
mostly zeros. The ``"patches"`` lowering computes the same sums without the zeros: output pixel ``s*q + r``
only meets the kernel taps whose dilated position falls on a real pixel, so each phase ``r`` (one per output
pixel of an ``s x s`` block) is an ordinary stride-1 convolution of the undilated input with a sub-kernel.
All phases share one window of the input, so they run as a single stride-1 patches convolution with
``s*s*out`` output channels (the sub-kernels gathered into one kernel, zeros where a phase has no tap)
followed by a depth-to-space interleave. For the DCGAN's 4x4 stride-2 layers that is 36 instead of 64
multiply-adds per input pixel and channel pair, in one matmul; for the U-Net's 2x2 stride-2 ones it is a
1x1 convolution. The copy of the window (``window * in`` values per input pixel) pays off when the matmul has
enough columns to use each copied value several times: on a 2-core AVX2 machine (fwd+grads,
benchmarks/RESULTS.md) 2x2 stride-2 kernels trained 4.7-7.1x faster, the DCGAN's 4x4 ones 1.4-3.2x from
``out=8`` up, and a 4x4 kernel to 1 or 2 channels 3.4x and 1.15x *slower*. `jaxdl.nn.lowering` chooses
between the two (on a CPU by measuring each use; its fixed rule picks phases when ``s*s*out`` is at least the
window's tap count); the phase lowering itself is `jaxdl.nn.lowering.transpose_phases`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import add_channel_bias
from jaxdl.nn.initializers import Initializer, get_initializer
from jaxdl.nn.lowering.select import lowered
from jaxdl.nn.lowering.transpose_phases import conv_transpose2d_phases, phase_taps
from jaxdl.nn.padding import Padding, normalize_padding, pair


def _transpose_padding(padding: str | list, kernel: int, stride: int, dilation: int, axis: int) -> tuple[int, int]:
    """Padding of the dilated input, by `lax.conv_transpose`'s rule (explicit pairs are used as they are)."""
    if not isinstance(padding, str):
        return tuple(padding[axis])  # type: ignore[return-value]
    span = (kernel - 1) * dilation + 1
    if padding == "SAME":
        total = span + stride - 2
        before = span - 1 if stride > span - 1 else -(-total // 2)
    else:  # VALID
        total = span + stride - 2 + max(span - stride, 0)
        before = span - 1
    return before, total - before


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 2,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
) -> jax.Array:
    """Transposed convolution of ``x: [batch, height, width, in]`` with ``kernel: [kh, kw, in, out]``, as
    ``lax.conv_transpose(x, kernel, strides, padding, rhs_dilation=dilation)`` (``flax.linen.ConvTranspose``).

    Returns ``[batch, out_height, out_width, out]``; with ``"SAME"`` the output is ``stride`` times the input,
    with ``"VALID"`` it is ``H * stride + max(span - stride, 0)`` (TensorFlow's rule; ``span = dilation * (kh - 1)
    + 1``); explicit ``((top, bottom), (left, right))`` pad the dilated input as in ``lax.conv_transpose``.
    `jaxdl.nn.lowering` chooses XLA's operation or the stride phases (see the module docstring); both give the
    same values up to float summation order.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"conv_transpose2d expects x [batch, h, w, c] and kernel [kh, kw, in, out]; "
                         f"got {x.shape} and {kernel.shape}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"conv_transpose2d: input has {x.shape[-1]} channels, so the kernel must be "
                         f"[kh, kw, {x.shape[-1]}, out]; got {kernel.shape}")
    strides, dilation, pad = pair(strides), pair(dilation), normalize_padding(padding)
    pads = [_transpose_padding(pad, kernel.shape[a], strides[a], dilation[a], a) for a in (0, 1)]
    plans = [phase_taps(x.shape[1 + a], kernel.shape[a], strides[a], dilation[a], pads[a]) for a in (0, 1)]
    lowerings = {
        "xla": lambda x, kernel: jax.lax.conv_transpose(x, kernel, strides, pads, rhs_dilation=dilation,
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")),
        "patches": lambda x, kernel: conv_transpose2d_phases(x, kernel, strides, plans),
    }
    window_taps = plans[0][-1].shape[0] * plans[1][-1].shape[0]
    columns = strides[0] * strides[1] * kernel.shape[3]
    rule = "patches" if columns >= window_taps else "xla"
    return lowered("conv_transpose2d", lowerings, (strides, tuple(map(tuple, pads)), dilation), cpu_rule=rule)(x, kernel)


class ConvTranspose2D(nn.Module):
    """A learned transposed convolution: ``y = conv_transpose2d(x, kernel) + bias``.

    ``x: [batch, height, width, in_channels] -> [batch, out_height, out_width, features]`` (``stride`` times
    larger with ``"SAME"``). Parameters are ``kernel: [kh, kw, in, features]`` and ``bias: [features]``, the
    names and layout of ``flax.linen.ConvTranspose`` (without ``transpose_kernel``), so weights move between
    the two. ``dtype`` is the compute dtype; parameters stay in ``param_dtype``.
    """

    features: int
    kernel_size: int | Sequence[int] = 2
    strides: int | Sequence[int] = 2
    padding: Padding = "SAME"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    kernel_init: str | Initializer = "lecun_normal"
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = pair(self.kernel_size)
        kernel = self.param("kernel", get_initializer(self.kernel_init), (kh, kw, x.shape[-1], self.features),
                            self.param_dtype)
        dtype = self.dtype or x.dtype
        y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, self.dilation)
        return add_channel_bias(self, y) if self.use_bias else y
