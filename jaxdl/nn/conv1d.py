"""1-D convolution over sequences (``[batch, time, channels]``, kernels ``[width, in, out]``), as
`flax.linen.Conv` with a one-element ``kernel_size`` computes it, through the 2-D convolution (a height-1
image), so `jaxdl.nn.lowering` chooses how it runs exactly as for images."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxdl.nn.conv import Conv2D, add_channel_bias, conv2d
from jaxdl.nn.initializers import get_initializer

Padding1D = str | int | Sequence[int] | Sequence[tuple[int, int]]
_FORMS = "'SAME', 'VALID', 'CAUSAL', 'CIRCULAR', 'REFLECT', an int, or ((before, after),)"


def _single(value: int | Sequence[int], name: str) -> int:
    if isinstance(value, int):
        return value
    values = tuple(value)
    if len(values) != 1 or not isinstance(values[0], int):
        raise ValueError(f"a 1-D convolution's {name} is an int or one int, got {value!r}")
    return values[0]


def padding_2d(padding: Padding1D, width: int, dilation: int) -> str | list[tuple[int, int]]:
    """The 2-D padding of a height-1 image that pads a sequence as ``padding`` does (``"CAUSAL"``: only before
    the sequence, so step ``t`` sees steps up to ``t``)."""
    if isinstance(padding, str):
        upper = padding.upper()
        if upper == "CAUSAL":
            return [(0, 0), ((width - 1) * dilation, 0)]
        if upper in ("SAME", "VALID", "CIRCULAR", "REFLECT"):
            return upper
    elif isinstance(padding, int):
        return [(0, 0), (padding, padding)]
    else:
        values = list(padding)
        if len(values) == 1 and isinstance(values[0], int):
            return [(0, 0), (values[0], values[0])]
        if len(values) == 1 and len(tuple(values[0])) == 2:
            return [(0, 0), tuple(int(p) for p in values[0])]
    raise ValueError(f"a 1-D convolution's padding must be {_FORMS}; got {padding!r}")


def conv1d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Padding1D = "SAME", dilation: int = 1,
           depthwise: bool = False) -> jax.Array:
    """Convolve ``x: [batch, time, in]`` with ``kernel: [width, in, out]`` (``depthwise``: ``[width, 1, in]``)
    -> ``[batch, out_time, out]``."""
    if x.ndim != 3 or kernel.ndim != 3:
        raise ValueError(f"conv1d expects x [batch, time, channels] and kernel [width, in, out]; got {x.shape} and {kernel.shape}")
    y = conv2d(x[:, None], kernel[None], (1, stride), padding_2d(padding, kernel.shape[0], dilation), (1, dilation),
               depthwise)
    return y[:, 0]


class Conv1D(Conv2D):
    """A learned 1-D convolution ``y = conv1d(x, kernel) + bias``: ``[batch, time, in] -> [batch, out_time,
    features]``, with `Conv2D`'s fields (one int each for ``kernel_size``, ``strides``, ``dilation``),
    ``flax.linen.Conv``'s parameter names and layout (``kernel: [width, in, features]``, ``bias: [features]``;
    ``depthwise``: ``[width, 1, features]``) and its 1-D paddings (``"CAUSAL"`` included)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = _single(self.kernel_size, "kernel_size")
        kernel = self.param("kernel", get_initializer(self.kernel_init),
                            (width, 1 if self.depthwise else x.shape[-1], self.features), self.param_dtype)
        dtype = self.dtype or x.dtype
        y = conv1d(x.astype(dtype), kernel.astype(dtype), _single(self.strides, "strides"), self.padding,
                   _single(self.dilation, "dilation"), self.depthwise)
        return add_channel_bias(self, y[:, None])[:, 0] if self.use_bias else y
