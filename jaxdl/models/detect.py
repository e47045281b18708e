"""A YOLO-style single-shot grid detector (Redmon et al., 2016, one box per cell).

A convolutional backbone downsamples the image by ``2 ** len(widths)`` to a ``G x G`` grid; a head predicts,
for every cell, one objectness logit, a box (centre offsets within the cell and width and height relative
to the image, as logits) and class logits. `jaxdl.detection_grid` encodes ground-truth boxes into this layout,
holds the loss, and decodes predictions into scored boxes.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from jaxdl.models.cnn import ConvBlock
from jaxdl.nn.conv import Conv2D


class GridDetector(nn.Module):
    """``images [b, h, w, c] -> [b, h / 2**k, w / 2**k, 5 + num_classes]`` with ``k = len(widths)``: per cell
    ``(objectness, x, y, w, h, class logits...)``.

    Each backbone stage is two 3x3 convolutions with BatchNorm and ReLU, then a 2x2 max pool; the head is a
    3x3 convolution of ``head_width`` and a 1x1 convolution to the outputs.
    """

    num_classes: int = 10
    widths: Sequence[int] = (32, 64, 128)
    head_width: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"GridDetector expects images [batch, height, width, channels], got shape {x.shape}")
        factor = 2 ** len(self.widths)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"GridDetector downsamples by {factor}: image height and width must be divisible by "
                             f"{factor}, got {x.shape[1:3]}")
        for width in self.widths:
            x = ConvBlock(width, convs=2, batch_norm=True)(x, train=train)
        x = ConvBlock(self.head_width, batch_norm=True, pool=None)(x, train=train)
        return Conv2D(5 + self.num_classes, 1, kernel_init="xavier_uniform")(x)
