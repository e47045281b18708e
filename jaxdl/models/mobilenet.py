"""Inverted-residual image networks: MobileNetV2 and EfficientNet-Lite (the family of both pretrained backbones).

A stem convolution, then stages of inverted residual blocks (1x1 expansion -> depthwise k x k -> linear 1x1
projection, with a skip connection when the shape allows), a 1x1 head convolution to ``head_channels``,
global average pooling, dropout and a dense classifier. Every convolution is followed by BatchNorm and
(except the projection) ReLU6. The two pretrained families differ only in their stage tables, their
BatchNorm epsilon and their padding: EfficientNet-Lite was trained in TensorFlow with "SAME" padding
(asymmetric on stride 2), MobileNetV2 in PyTorch with symmetric ``k // 2`` padding.

Images are NHWC floats in [0, 1]; the model normalises them with its ``input_mean`` and ``input_std`` (per
channel), so a backbone is fed the way it was trained whatever its source's convention.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import Conv2D
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.normalization import batch_norm

# (expansion, kernel, stride, out channels, repeats) per stage.
MOBILENET_V2_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 3, 2, 32, 3), (6, 3, 2, 64, 4), (6, 3, 1, 96, 3),
                       (6, 3, 2, 160, 3), (6, 3, 1, 320, 1))
EFFICIENTNET_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                             (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF_RANGE_MEAN, HALF_RANGE_STD = (127 / 255,) * 3, (128 / 255,) * 3  # (x * 255 - 127) / 128


def _padding(kernel: int, mode: str) -> str | tuple[tuple[int, int], ...]:
    if mode == "same":
        return "SAME"
    if mode == "symmetric":
        return ((kernel // 2, kernel // 2),) * 2
    raise ValueError(f"padding must be 'same' (TensorFlow) or 'symmetric' (PyTorch), got {mode!r}")


class ConvBN(nn.Module):
    """Convolution (no bias) -> BatchNorm -> optional ReLU6; ``depthwise`` convolves each channel on its own."""

    features: int
    kernel: int = 1
    stride: int = 1
    depthwise: bool = False
    activate: bool = True
    padding: str = "same"
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = Conv2D(self.features, self.kernel, self.stride, _padding(self.kernel, self.padding), use_bias=False,
                   depthwise=self.depthwise, name="conv")(x)
        x = batch_norm(train, name="bn", epsilon=self.bn_epsilon)(x)
        return jax.nn.relu6(x) if self.activate else x


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when ``expansion`` is 1) -> depthwise ``kernel`` x ``kernel`` -> project (1x1, linear);
    the input is added back when stride is 1 and the channel counts agree."""

    features: int
    expansion: int
    kernel: int
    stride: int
    padding: str = "same"
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        common = dict(padding=self.padding, bn_epsilon=self.bn_epsilon)
        hidden = x.shape[-1] * self.expansion
        y = x
        if self.expansion != 1:
            y = ConvBN(hidden, **common, name="expand")(y, train=train)
        y = ConvBN(hidden, self.kernel, self.stride, depthwise=True, **common, name="depthwise")(y, train=train)
        y = ConvBN(self.features, activate=False, **common, name="project")(y, train=train)
        return x + y if self.stride == 1 and x.shape[-1] == self.features else y


class MobileNet(nn.Module):
    """``[b, h, w, 3]`` images in [0, 1] -> ``[b, num_outputs]`` logits (``num_outputs=None``: the pooled
    ``[b, head_channels]`` features, the usual input of a new head).

    Defaults are MobileNetV2's; `efficientnet_lite0` and `mobilenet_v2` build the pretrained configurations.
    """

    num_outputs: int | None = 1000
    stages: Sequence[Sequence[int]] = MOBILENET_V2_STAGES
    stem_channels: int = 32
    head_channels: int = 1280
    padding: str = "symmetric"
    bn_epsilon: float = 1e-5
    dropout_rate: float = 0.2
    input_mean: Sequence[float] = IMAGENET_MEAN
    input_std: Sequence[float] = IMAGENET_STD
    frozen_blocks: int = 0  # the stem and the first k blocks run in inference mode (their BatchNorm statistics stay)

    def features(self, x: jax.Array, train: bool) -> jax.Array:
        """Normalised images -> pooled backbone features ``[b, head_channels]``."""
        if x.ndim != 4 or x.shape[-1] != len(self.input_mean):
            raise ValueError(f"expected images [batch, height, width, {len(self.input_mean)}], got shape {x.shape}; "
                             "repeat grayscale channels first (jaxdl.data.images.to_rgb)")
        per_channel = (1, 1, 1, len(self.input_mean))
        x = (x - jnp.asarray(self.input_mean, x.dtype).reshape(per_channel)) / jnp.asarray(self.input_std, x.dtype).reshape(per_channel)
        common = dict(padding=self.padding, bn_epsilon=self.bn_epsilon)
        x = ConvBN(self.stem_channels, 3, 2, **common, name="stem")(x, train=train and self.frozen_blocks == 0)
        index = 0
        for expansion, kernel, stride, channels, repeats in self.stages:
            for repeat in range(repeats):
                x = InvertedResidual(channels, expansion, kernel, stride if repeat == 0 else 1, **common,
                                     name=f"block_{index}")(x, train=train and index >= self.frozen_blocks)
                index += 1
        x = ConvBN(self.head_channels, **common, name="head")(x, train=train)
        return x.mean(axis=(1, 2))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.features(x, train)
        if self.num_outputs is None:
            return x
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, name="classifier")(x)


def mobilenet_v2(**overrides) -> MobileNet:
    """MobileNetV2 (torchvision's ImageNet configuration: symmetric padding, BatchNorm eps 1e-5, ImageNet mean/std)."""
    return MobileNet(**overrides)


def efficientnet_lite0(**overrides) -> MobileNet:
    """EfficientNet-Lite0 (TensorFlow "SAME" padding, BatchNorm eps 1e-3, inputs scaled as (x*255 - 127) / 128)."""
    config = dict(stages=EFFICIENTNET_LITE0_STAGES, padding="same", bn_epsilon=1e-3,
                  input_mean=HALF_RANGE_MEAN, input_std=HALF_RANGE_STD)
    return MobileNet(**{**config, **overrides})
