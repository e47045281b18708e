"""Residual networks (He et al., 2015): the CIFAR family (ResNet-20/32/44/56/110) and the ImageNet family
(ResNet-18/34 with basic blocks, ResNet-50/101/152 with bottlenecks).

A residual block adds its input to what its convolutions compute, ``relu(F(x) + shortcut(x))``, so a deep
stack starts close to the identity and gradients reach the first layers through the shortcuts. Where a block
changes the shape (stride 2 or more channels) the shortcut is a strided 1x1 convolution with BatchNorm
(``shortcut="projection"``, option B of the paper) or the strided input padded with zero channels
(``shortcut="pad"``, option A, the paper's CIFAR networks: no parameters).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.heads import DenseHead
from jaxdl.nn.conv import Conv2D
from jaxdl.nn.normalization import batch_norm
from jaxdl.nn.pooling import get_pool

SHORTCUTS = ("projection", "pad")
STEMS = ("cifar", "imagenet")
BLOCKS = ("basic", "bottleneck")


class _Shortcut(nn.Module):
    """The identity, or what makes ``x`` match a block's output ``[b, h/s, w/s, features]``."""

    features: int
    strides: int
    kind: str

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.strides == 1 and x.shape[-1] == self.features:
            return x
        if self.kind == "pad":
            x = x[:, ::self.strides, ::self.strides, :]
            return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.features - x.shape[-1])))
        x = Conv2D(self.features, 1, self.strides, use_bias=False)(x)
        return batch_norm(train)(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm: ``[b, h, w, c] -> [b, h/strides, w/strides, features]``."""

    features: int
    strides: int = 1
    shortcut: str = "projection"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = Conv2D(self.features, 3, self.strides, use_bias=False)(x)
        y = batch_norm(train, relu=True)(y)
        y = Conv2D(self.features, 3, use_bias=False)(y)
        return batch_norm(train, relu=True)(y, residual=_Shortcut(self.features, self.strides, self.shortcut)(x, train=train))


class BottleneckBlock(nn.Module):
    """1x1 (``features``) -> 3x3 (strided) -> 1x1 (``4 * features``) with BatchNorm: the deep ResNets' block."""

    features: int
    strides: int = 1
    shortcut: str = "projection"
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = Conv2D(self.features, 1, use_bias=False)(x)
        y = batch_norm(train, relu=True)(y)
        y = Conv2D(self.features, 3, self.strides, use_bias=False)(y)
        y = batch_norm(train, relu=True)(y)
        y = Conv2D(self.features * self.expansion, 1, use_bias=False)(y)
        shortcut = _Shortcut(self.features * self.expansion, self.strides, self.shortcut)
        return batch_norm(train, relu=True)(y, residual=shortcut(x, train=train))


class ResNet(nn.Module):
    """Stem, stages of residual blocks (stage ``i`` has ``stage_sizes[i]`` blocks of width ``widths[i]``; every
    stage after the first starts with a stride-2 block), global average pooling, then a dense head:
    ``[b, h, w, c] -> [b, num_outputs]`` (None: the pooled features, a backbone for transfer).

    ``stem="cifar"`` is one 3x3 convolution at full resolution (32x32 inputs); ``"imagenet"`` a 7x7 stride-2
    convolution and a 3x3 stride-2 max pool (224x224 inputs).
    """

    stage_sizes: Sequence[int] = (3, 3, 3)
    widths: Sequence[int] = (16, 32, 64)
    block: str = "basic"
    stem: str = "cifar"
    shortcut: str = "projection"
    num_outputs: int | None = 10

    def _check(self, x: jax.Array) -> None:
        for field, value, valid in (("block", self.block, BLOCKS), ("stem", self.stem, STEMS),
                                    ("shortcut", self.shortcut, SHORTCUTS)):
            if value not in valid:
                raise ValueError(f"ResNet: unknown {field} {value!r}; valid ones are {list(valid)}")
        if len(self.stage_sizes) != len(self.widths) or not self.stage_sizes:
            raise ValueError(f"ResNet: stage_sizes {tuple(self.stage_sizes)} and widths {tuple(self.widths)} must be "
                             "non-empty and of the same length")
        if x.ndim != 4:
            raise ValueError(f"ResNet expects images [batch, height, width, channels], got shape {x.shape}")
        if self.block == "bottleneck" and self.shortcut == "pad":
            raise ValueError("ResNet: bottleneck blocks need shortcut='projection' (a 4x wider output)")

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        self._check(x)
        if self.stem == "cifar":
            x = Conv2D(self.widths[0], 3, use_bias=False)(x)
            x = batch_norm(train, relu=True)(x)
        else:
            x = Conv2D(64, 7, 2, use_bias=False)(x)
            x = batch_norm(train, relu=True)(x)
            x = get_pool("max")(x, 3, 2, "SAME")
        block = BasicBlock if self.block == "basic" else BottleneckBlock
        for stage, (count, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for i in range(count):
                strides = 2 if stage > 0 and i == 0 else 1
                x = block(width, strides, self.shortcut)(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return DenseHead((), self.num_outputs)(x, train=train)


def _cifar(depth: int) -> functools.partial:
    return functools.partial(ResNet, stage_sizes=((depth - 2) // 6,) * 3, widths=(16, 32, 64), stem="cifar")


ResNet20, ResNet32, ResNet44, ResNet56, ResNet110 = (_cifar(d) for d in (20, 32, 44, 56, 110))
_IMAGENET = dict(widths=(64, 128, 256, 512), stem="imagenet", num_outputs=1000)
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), **_IMAGENET)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), **_IMAGENET)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck", **_IMAGENET)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck", **_IMAGENET)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block="bottleneck", **_IMAGENET)
