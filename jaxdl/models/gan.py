"""DCGAN (Radford et al., 2016) for small images: a generator and a discriminator in one Linen module.

The generator maps a latent vector to an image through a dense layer and two stride-2 transposed
convolutions (BatchNorm and ReLU between, tanh at the end); the discriminator maps an image to one logit
(real vs generated) through two stride-2 convolutions with leaky ReLU and dropout. Images outside the
module are in ``[0, 1]``, like every other jaxdl image: the module rescales to the ``[-1, 1]`` that tanh
produces. The variables are ``{"generator": ..., "discriminator": ...}``, so each half has its own
optimizer (`jaxdl.train.gan`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import Conv2D
from jaxdl.nn.conv_transpose import ConvTranspose2D
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.normalization import batch_norm


class Generator(nn.Module):
    """``z: [b, latent] -> images [b, h, w, c]`` in ``[0, 1]`` (``h`` and ``w`` divisible by 4)."""

    image_shape: Sequence[int] = (28, 28, 1)
    width: int = 64

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        h, w, c = self.image_shape
        x = nn.Dense((h // 4) * (w // 4) * 2 * self.width, use_bias=False)(z)
        x = nn.relu(batch_norm(train)(x)).reshape(z.shape[0], h // 4, w // 4, 2 * self.width)
        x = ConvTranspose2D(self.width, 4, 2, use_bias=False)(x)
        x = nn.relu(batch_norm(train)(x))
        x = ConvTranspose2D(c, 4, 2)(x)
        return (jnp.tanh(x) + 1.0) / 2.0


class Discriminator(nn.Module):
    """``images [b, h, w, c]`` in ``[0, 1]`` -> logits ``[b]`` (positive: judged real)."""

    width: int = 64
    dropout_rate: float = 0.3

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = 2.0 * x - 1.0
        for width in (self.width, 2 * self.width):
            x = nn.leaky_relu(Conv2D(width, 4, 2, kernel_init="xavier_uniform")(x), 0.2)
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class GAN(nn.Module):
    """A `Generator` and a `Discriminator` for images of ``image_shape`` from ``latent_dim``-dimensional noise.

    ``__call__(x)`` is the discriminator's logits for ``x`` (and creates both halves' variables at init);
    ``generate(z)`` samples images, ``discriminate(x)`` scores them.
    """

    image_shape: Sequence[int] = (28, 28, 1)
    latent_dim: int = 64
    width: int = 64
    dropout_rate: float = 0.3
    generator_width: int | None = None  # each half's own width, when they should differ (default: ``width``)
    discriminator_width: int | None = None

    def setup(self) -> None:
        h, w = self.image_shape[:2]
        if h % 4 or w % 4:
            raise ValueError(f"GAN: the generator doubles 4x-downsized maps twice; image height and width must be "
                             f"divisible by 4, got {tuple(self.image_shape)}")
        self.generator = Generator(tuple(self.image_shape), self.generator_width or self.width)
        self.discriminator = Discriminator(self.discriminator_width or self.width, self.dropout_rate)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"GAN built for images {tuple(self.image_shape)}, got a batch of shape {x.shape}")
        self.generator(jnp.zeros((x.shape[0], self.latent_dim), x.dtype), train=train)  # creates its variables
        return self.discriminator(x, train=train)

    def generate(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Images ``[b, *image_shape]`` in ``[0, 1]`` from latents ``z: [b, latent_dim]``."""
        return self.generator(z, train=train)

    def discriminate(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``[b]`` that ``x`` is a real image."""
        return self.discriminator(x, train=train)
