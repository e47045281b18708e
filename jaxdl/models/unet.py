"""U-Net (Ronneberger et al., 2015): an encoder-decoder for per-pixel classification.

The encoder halves the image at each level and doubles the channels; the decoder upsamples back and, at each
level, concatenates the encoder's features of the same resolution (the skip connection) so fine detail
lost by pooling returns to the output. Padding is "SAME" throughout, so the logits ``[b, h, w, num_classes]``
have the input's size (the paper's unpadded convolutions crop instead).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.cnn import ConvBlock
from jaxdl.nn.conv import Conv2D
from jaxdl.nn.conv_transpose import ConvTranspose2D
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.pooling import get_pool

UPSAMPLING = ("transpose", "resize")


class UNet(nn.Module):
    """``[b, h, w, c] -> [b, h, w, num_classes]`` logits; ``h`` and ``w`` must be divisible by
    ``2 ** (len(widths) - 1)``.

    ``widths[i]`` is level ``i``'s channel count (two 3x3 convolutions, BatchNorm when ``batch_norm``, ReLU);
    the last level is the bottleneck. ``upsample="transpose"`` doubles the resolution with a learned 2x2
    stride-2 transposed convolution, ``"resize"`` with bilinear resizing and a 3x3 convolution (no
    checkerboard artefacts). ``dropout_rate`` acts at the bottleneck.
    """

    num_classes: int = 2
    widths: Sequence[int] = (32, 64, 128)
    upsample: str = "transpose"
    batch_norm: bool = True
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.upsample not in UPSAMPLING:
            raise ValueError(f"UNet: unknown upsample {self.upsample!r}; valid ones are {list(UPSAMPLING)}")
        if x.ndim != 4:
            raise ValueError(f"UNet expects images [batch, height, width, channels], got shape {x.shape}")
        factor = 2 ** (len(self.widths) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"UNet with {len(self.widths)} levels halves the image {len(self.widths) - 1} times: height "
                             f"and width must be divisible by {factor}, got {x.shape[1:3]}")

        def block(width: int) -> ConvBlock:
            return ConvBlock(width, convs=2, batch_norm=self.batch_norm, pool=None)

        skips = []
        for width in self.widths[:-1]:
            x = block(width)(x, train=train)
            skips.append(x)
            x = get_pool("max")(x, 2)
        x = block(self.widths[-1])(x, train=train)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        for width, skip in zip(reversed(self.widths[:-1]), reversed(skips)):
            if self.upsample == "transpose":
                x = ConvTranspose2D(width, 2, 2)(x)
            else:
                x = jax.image.resize(x, (x.shape[0], skip.shape[1], skip.shape[2], x.shape[3]), "bilinear")
                x = Conv2D(width, 3)(x)
            x = block(width)(jnp.concatenate([x, skip], axis=-1), train=train)
        return Conv2D(self.num_classes, 1, kernel_init="xavier_uniform")(x)
