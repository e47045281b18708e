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
``out=8`` up, and a 4x4 kernel to 1 or 2 channels 3.4x and 1.15x *slower*. ``"auto"`` keeps the native
lowering on GPU/TPU; on CPU it times both for each shape and pass (forward, input gradient, kernel gradient)
once per machine and runs each pass through the faster (`jaxdl.nn.autotune`); with measuring off it picks patches when ``s*s*out`` is at least the window's tap count.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.nn import autotune
from jaxdl.nn.conv import IMPLEMENTATIONS, Padding, _conv2d_patches, _padding, _pair, add_channel_bias
from jaxdl.nn.initializers import Initializer, get_initializer


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


def _phase_taps(size: int, kernel: int, stride: int, dilation: int, pad: tuple[int, int]):
    """Along one axis: the output length, the number of output blocks ``q``, the window offsets
    ``(first, last)`` into the input, and ``taps[w, r]``: the kernel tap that phase ``r`` applies at window
    position ``w`` (``kernel`` where it applies none)."""
    before, after = pad
    length = (size - 1) * stride + 1 + before + after - (kernel - 1) * dilation
    if length < 1:
        raise ValueError(f"conv_transpose2d: an input of size {size} with kernel {kernel} (dilation {dilation}), "
                         f"stride {stride} and padding {pad} gives an empty output ({length})")
    offsets = {}  # (u, r) -> input offset of tap u in phase r: output s*q + r reads input q + offset
    for r in range(stride):
        for u in range(kernel):
            shifted = r + u * dilation - before
            if shifted % stride == 0:
                offsets[u, r] = shifted // stride
    first, last = min(offsets.values()), max(offsets.values())
    taps = np.full((last - first + 1, stride), kernel, np.int32)
    for (u, r), offset in offsets.items():
        taps[offset - first, r] = u
    return length, -(-length // stride), first, last, taps


def _conv_transpose2d_phases(x, kernel, strides, plans):
    cin, cout = kernel.shape[2:]
    sh, sw = strides
    (lh, qh, first_h, last_h, taps_h), (lw, qw, first_w, last_w, taps_w) = plans
    # One zero row and column stand for "no tap"; a gather (not a 0/1 matmul) keeps the kernel exact on every backend.
    padded_kernel = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    phase_kernel = padded_kernel[taps_h[:, :, None, None], taps_w[None, None, :, :]]  # [wh, rh, ww, rw, in, out]
    phase_kernel = phase_kernel.transpose(0, 2, 4, 1, 3, 5).reshape(taps_h.shape[0], taps_w.shape[0], cin, sh * sw * cout)
    # Negative padding crops: input rows no output block reads.
    window = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (-first_h, qh - 1 + last_h - (x.shape[1] - 1), 0),
                                                    (-first_w, qw - 1 + last_w - (x.shape[2] - 1), 0), (0, 0, 0)))
    y = _conv2d_patches(window, phase_kernel, (1, 1), "VALID", (1, 1))  # [b, qh, qw, rh * rw * out]
    y = y.reshape(x.shape[0], qh, qw, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5).reshape(x.shape[0], qh * sh, qw * sw, cout)
    return y[:, :lh, :lw, :]


def conv_transpose2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = 2,
    padding: Padding = "SAME",
    dilation: int | Sequence[int] = 1,
    implementation: str = "auto",
) -> jax.Array:
    """Transposed convolution of ``x: [batch, height, width, in]`` with ``kernel: [kh, kw, in, out]``, as
    ``lax.conv_transpose(x, kernel, strides, padding, rhs_dilation=dilation)`` (``flax.linen.ConvTranspose``).

    Returns ``[batch, out_height, out_width, out]``; with ``"SAME"`` the output is ``stride`` times the input,
    with ``"VALID"`` it is ``H * stride + max(span - stride, 0)`` (TensorFlow's rule; ``span = dilation * (kh - 1)
    + 1``); explicit ``((top, bottom), (left, right))`` pad the dilated input as in ``lax.conv_transpose``. ``implementation`` is ``"xla"``,
    ``"patches"`` (stride phases, see the module docstring) or ``"auto"`` (native on GPU/TPU, the faster of the
    two on CPU, see the module docstring); all give the same values up to float summation order.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"conv_transpose2d expects x [batch, h, w, c] and kernel [kh, kw, in, out]; "
                         f"got {x.shape} and {kernel.shape}")
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"conv_transpose2d: input has {x.shape[-1]} channels, so the kernel must be "
                         f"[kh, kw, {x.shape[-1]}, out]; got {kernel.shape}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown conv implementation {implementation!r}; valid ones are {list(IMPLEMENTATIONS)}")
    strides, dilation, pad = _pair(strides), _pair(dilation), _padding(padding)
    pads = [_transpose_padding(pad, kernel.shape[a], strides[a], dilation[a], a) for a in (0, 1)]
    plans = [_phase_taps(x.shape[1 + a], kernel.shape[a], strides[a], dilation[a], pads[a]) for a in (0, 1)]
    lowerings = {
        "xla": lambda x, kernel: jax.lax.conv_transpose(x, kernel, strides, pads, rhs_dilation=dilation,
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")),
        "patches": lambda x, kernel: _conv_transpose2d_phases(x, kernel, strides, plans),
    }
    if implementation == "auto":
        if jax.default_backend() != "cpu":
            implementation = "xla"
        else:
            window_taps = plans[0][-1].shape[0] * plans[1][-1].shape[0]
            columns = strides[0] * strides[1] * kernel.shape[3]
            rule = "patches" if columns >= window_taps else "xla"
            return autotune.tuned("conv_transpose2d", lowerings, (strides, tuple(map(tuple, pads)), dilation),
                                  default=rule)(x, kernel)
    return lowerings[implementation](x, kernel)


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
    implementation: str = "auto"
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        kernel = self.param("kernel", get_initializer(self.kernel_init), (kh, kw, x.shape[-1], self.features),
                            self.param_dtype)
        dtype = self.dtype or x.dtype
        y = conv_transpose2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, self.dilation,
                             self.implementation)
        return add_channel_bias(self, y) if self.use_bias else y
