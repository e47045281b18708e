"""A pretrained backbone with a new head: the model of transfer learning.

The backbone is any Linen module that maps inputs to features: a `MobileNet` with ``num_outputs=None``
(pooled image features), a `BertEncoder` (token states, mean-pooled over real tokens here), or a jaxdl
model trained earlier with its output layer removed (``num_outputs=None``). It lives in the ``backbone``
subtree of the variables, so `jaxdl.transfer.backbone.restore_backbone` can fill it from a checkpoint and
`jaxdl.transfer.freeze` can tell its parameters from the head's. The head is any Linen module (``head``;
its training flag found as `jaxdl.models.adapter` finds it) or, by default, one Dense layer of ``num_outputs``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.adapter import call_with_train
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.sequence_pooling import pool_steps


def adapt_images(x: jax.Array, size: int | None, channels: int | None) -> jax.Array:
    """Resize NHWC images to ``size`` x ``size`` (bilinear; None keeps them) and repeat a single channel to
    ``channels`` (None keeps them): grey 28x28 digits become what an ImageNet network was trained on."""
    if x.ndim != 4:
        raise ValueError(f"expected images [batch, height, width, channels], got shape {x.shape}")
    if size is not None and x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
    if channels is not None and x.shape[-1] != channels:
        if x.shape[-1] != 1:
            raise ValueError(f"cannot turn {x.shape[-1]}-channel images into {channels} channels; only 1 channel repeats")
        x = jnp.repeat(x, channels, axis=-1)
    return x


class TransferClassifier(nn.Module):
    """``backbone`` features -> dropout -> the ``head``: Dense ``num_outputs`` by default, or any Linen module
    given as ``head`` (e.g. ``DenseHead((256,), num_outputs=5, dropout_rate=0.5)``), which then sets the outputs.

    ``inputs``: "image" (NHWC, adapted by `adapt_images` with ``input_size`` and ``input_channels``) or
    "tokens" (ids ``[batch, time]``, 0 = padding; the backbone's token states are mean-pooled).
    ``train_backbone=False`` runs the backbone in inference mode even while training (BatchNorm keeps its
    running statistics, dropout is off): what feature extraction needs for frozen weights to stay frozen.
    """

    backbone: nn.Module
    num_outputs: int = 10
    head: nn.Module | None = None
    inputs: str = "image"
    input_size: int | None = None
    input_channels: int | None = None
    head_dropout: float = 0.0
    train_backbone: bool = True

    def features(self, x: jax.Array, train: bool) -> jax.Array:
        """The backbone's pooled features for ``x``."""
        backbone_train = train and self.train_backbone
        if self.inputs == "image":
            return self.backbone(adapt_images(x, self.input_size, self.input_channels), train=backbone_train)
        if self.inputs == "tokens":
            valid = x != 0
            return pool_steps(self.backbone(x, valid, train=backbone_train), valid, "mean")
        raise ValueError(f"TransferClassifier.inputs must be 'image' or 'tokens', got {self.inputs!r}")

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> Any:
        features = self.features(x, train)
        features = features.reshape(features.shape[0], -1)
        features = Dropout(self.head_dropout, deterministic=not train)(features)
        if self.head is not None:
            return call_with_train(self.head, features, train)
        return nn.Dense(self.num_outputs, name="head")(features)
