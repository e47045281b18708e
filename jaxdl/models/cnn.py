"""Convolutional networks for NHWC images: LeNet-5, a configurable ConvNet, and VGG.

Each network is a stack of small blocks whose convolution, normalisation and activation are chosen by
hyperparameters, then a dense head. ``train`` switches dropout and BatchNorm between modes.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax

from jaxdl.models.heads import DenseHead
from jaxdl.nn.activations import get_activation
from jaxdl.nn.conv import Conv2D
from jaxdl.nn.normalization import batch_norm
from jaxdl.nn.pooling import get_pool


def normalized_activation(x: jax.Array, train: bool, use_batch_norm: bool, activation: str) -> jax.Array:
    """``activation(BatchNorm(x))`` (or ``activation(x)``), called inside a compact module: a ReLU after
    BatchNorm is the layer's own (``batch_norm(train, relu=True)``), so on a CPU it runs in oneDNN's passes."""
    if use_batch_norm and activation == "relu":
        return batch_norm(train, relu=True)(x)
    return get_activation(activation)(batch_norm(train)(x) if use_batch_norm else x)


class ConvBlock(nn.Module):
    """``convs`` x (Conv2D -> [BatchNorm] -> act), then a pool: ``[b, h, w, c] -> [b, h/s, w/s, features]``."""

    features: int
    convs: int = 1
    kernel_size: int = 3
    strides: int = 1
    padding: str = "SAME"
    batch_norm: bool = False
    activation: str = "relu"
    pool: str | None = "max"
    pool_size: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for _ in range(self.convs):
            x = Conv2D(self.features, self.kernel_size, self.strides, self.padding, use_bias=not self.batch_norm)(x)
            x = normalized_activation(x, train, self.batch_norm, self.activation)
        if self.pool:
            x = get_pool(self.pool)(x, self.pool_size)
        return x


class ConvNet(nn.Module):
    """Conv-act-pool blocks then a dense head: ``[b, h, w, c] -> [b, num_outputs]``.

    ``channels[i]`` is block i's width; every block has ``convs_per_block`` convolutions of
    ``kernel_size`` with ``strides`` and ``padding`` ("SAME"/"VALID"), then ``pool`` ("max", "avg" or None).
    """

    channels: Sequence[int] = (32, 64)
    num_outputs: int | None = 10  # None: the dense head's last hidden activations (a backbone for transfer)
    convs_per_block: int = 1
    kernel_size: int = 3
    strides: int = 1
    padding: str = "SAME"
    pool: str | None = "max"
    pool_size: int = 2
    batch_norm: bool = False
    activation: str = "relu"
    dense: Sequence[int] = (128,)
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"ConvNet expects images [batch, height, width, channels], got shape {x.shape}")
        size = x.shape[1:3]
        for i, width in enumerate(self.channels):
            x = ConvBlock(width, self.convs_per_block, self.kernel_size, self.strides, self.padding,
                          self.batch_norm, self.activation, self.pool, self.pool_size)(x, train=train)
            if min(x.shape[1:3]) < 1:
                raise ValueError(f"ConvNet: block {i} shrinks the {size} input to {x.shape[1:3]}; use larger "
                                 "images, fewer blocks, padding='SAME' or a smaller pool")
        return DenseHead(self.dense, self.num_outputs, self.activation, self.dropout_rate)(x, train=train)


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 inputs: conv 6@5x5 (SAME, as on LeCun's 32x32) -> pool -> conv 16@5x5 (VALID) -> pool
    -> 120 -> 84 -> ``num_outputs``. ReLU and max pooling by default (``"tanh"``/``"avg"`` give the 1998 net)."""

    num_outputs: int = 10
    activation: str = "relu"
    pool: str = "max"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"LeNet5 expects images [batch, height, width, channels], got shape {x.shape}")
        x = ConvBlock(6, kernel_size=5, padding="SAME", activation=self.activation, pool=self.pool)(x)
        x = ConvBlock(16, kernel_size=5, padding="VALID", activation=self.activation, pool=self.pool)(x)
        return DenseHead((120, 84), self.num_outputs, self.activation)(x, train=train)


class VGG(nn.Module):
    """VGG: stages of 3x3 SAME convolutions (``stages[i]`` lists stage i's widths), each stage ending in a
    2x2 max pool, then a dense head with dropout. ``batch_norm`` adds BatchNorm after every convolution."""

    stages: Sequence[Sequence[int]] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
    num_outputs: int = 1000
    dense: Sequence[int] = (4096, 4096)
    dropout_rate: float = 0.5
    batch_norm: bool = False
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"VGG expects images [batch, height, width, channels], got shape {x.shape}")
        if min(x.shape[1:3]) < 2 ** len(self.stages):
            raise ValueError(f"VGG with {len(self.stages)} stages halves the image {len(self.stages)} times; "
                             f"input {x.shape[1:3]} is too small (needs >= {2 ** len(self.stages)})")
        for stage in self.stages:
            for width in stage:
                x = Conv2D(width, 3, use_bias=not self.batch_norm)(x)
                x = normalized_activation(x, train, self.batch_norm, self.activation)
            x = get_pool("max")(x, 2)
        return DenseHead(self.dense, self.num_outputs, self.activation, self.dropout_rate)(x, train=train)


VGG11 = functools.partial(VGG, stages=((64,), (128,), (256, 256), (512, 512), (512, 512)))
VGG13 = functools.partial(VGG, stages=((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)))
VGG16 = functools.partial(VGG, stages=((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)))
VGG19 = functools.partial(VGG, stages=((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4))
# A VGG for 28x28 grey images: two stages, small head. Same family, sized for MNIST-like data.
VGGSmall = functools.partial(VGG, stages=((32, 32), (64, 64)), dense=(256,), num_outputs=10, batch_norm=True)
