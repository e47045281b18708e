"""The stride-phase lowering of a transposed convolution: the same sums as convolving the zero-dilated input,
without the zeros.

Output pixel ``s*q + r`` only meets the kernel taps whose dilated position falls on a real pixel, so each
phase ``r`` (one per output pixel of an ``s x s`` block) is an ordinary stride-1 convolution of the undilated
input with a sub-kernel; all phases share one window of the input and run as a single patches convolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.nn.lowering.patches import conv2d_patches


def phase_taps(size: int, kernel: int, stride: int, dilation: int,
               pad: tuple[int, int]) -> tuple[int, int, int, int, np.ndarray]:
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


def conv_transpose2d_phases(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], plans: list) -> jax.Array:
    """A transposed convolution as one stride-1 patches convolution of the undilated input with every phase's
    sub-kernel gathered into ``s*s*out`` output channels, then a depth-to-space interleave (``plans``: one
    `phase_taps` per spatial axis)."""
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
    y = conv2d_patches(window, phase_kernel, (1, 1), "VALID", (1, 1))  # [b, qh, qw, rh * rw * out]
    y = y.reshape(x.shape[0], qh, qw, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5).reshape(x.shape[0], qh * sh, qw * sw, cout)
    return y[:, :lh, :lw, :]
