"""DCGAN (Radford et al., 2016) for small images: a generator and a discriminator in one Linen module.

The generator maps a latent vector to an image through a dense layer and two stride-2 transposed
convolutions (BatchNorm and ReLU between, tanh at the end); the discriminator maps an image to one logit
(real vs generated) through two stride-2 convolutions with leaky ReLU and dropout. ``hidden_units`` adds a
dense hidden layer to each half, as InfoGAN's MNIST networks (Chen et al., 2016) have: between the noise and
the first maps in the generator, between the last maps and the logit in the discriminator, so the generator
can lay out a digit's global shape and the discriminator judge it (without it the logit is a linear sum of
local features). ``minibatch_std`` gives the discriminator the spread of its batch as one more feature map
(Karras et al., 2018), so a generator that draws too few kinds of digit is told apart. ``pack`` makes it a
PacGAN discriminator (Lin et al., 2018): it judges ``pack`` images at once, stacked on the channel axis, and
every image of a pack gets the pack's logit; a generator that draws too few kinds of digit makes packs
whose members look alike, which real packs rarely do. Images outside the module are in ``[0, 1]``, like every other jaxdl image: the module
rescales to the ``[-1, 1]`` that tanh produces. The variables are ``{"generator": ..., "discriminator": ...}``,
so each half has its own optimizer (`jaxdl.training.gan`).
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
    """``z: [b, latent] -> images [b, h, w, c]`` in ``[0, 1]`` (``h`` and ``w`` divisible by 4); with
    ``hidden_units``, a dense layer (BatchNorm, ReLU) of that many features first."""

    image_shape: Sequence[int] = (28, 28, 1)
    width: int = 64
    hidden_units: int = 0

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        h, w, c = self.image_shape
        if self.hidden_units:
            z = batch_norm(train, relu=True)(nn.Dense(self.hidden_units, use_bias=False)(z))
        x = nn.Dense((h // 4) * (w // 4) * 2 * self.width, use_bias=False)(z)
        x = batch_norm(train, relu=True)(x).reshape(z.shape[0], h // 4, w // 4, 2 * self.width)
        x = ConvTranspose2D(self.width, 4, 2, use_bias=False)(x)
        x = batch_norm(train, relu=True)(x)
        x = ConvTranspose2D(c, 4, 2)(x)
        return (jnp.tanh(x) + 1.0) / 2.0


def minibatch_std(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``x: [b, h, w, c] -> [b, h, w, c + 1]``: the last channel is, everywhere, the standard deviation of each
    feature over the batch's examples (those where ``mask: [b]`` is True), averaged over features and
    positions (ProGAN's minibatch standard deviation, over the whole batch). A batch of near-copies gets a
    value near 0 however realistic each copy is, so the discriminator can tell it from a varied real batch."""
    weights = jnp.ones(x.shape[:1], x.dtype) if mask is None else mask.astype(x.dtype)
    count = jnp.maximum(jnp.sum(weights), 1.0)
    w = weights.reshape(-1, 1, 1, 1)
    mean = jnp.sum(w * x, axis=0, keepdims=True) / count
    variance = jnp.sum(w * jnp.square(x - mean), axis=0) / count
    spread = jnp.mean(jnp.sqrt(variance + 1e-8))
    return jnp.concatenate([x, jnp.broadcast_to(spread, x.shape[:-1] + (1,)).astype(x.dtype)], axis=-1)


class Discriminator(nn.Module):
    """``images [b, h, w, c]`` in ``[0, 1]`` -> logits ``[b]`` (positive: judged real); with ``hidden_units``,
    a dense layer (leaky ReLU) of that many features before the logit. With ``minibatch_std``, the batch's
    spread (`minibatch_std`, over the examples where ``mask`` is True) joins the last feature maps. With
    ``pack > 1``, consecutive groups of ``pack`` images are judged together (`pack_images`) and each image
    gets its group's logit."""

    width: int = 64
    dropout_rate: float = 0.3
    hidden_units: int = 0
    minibatch_std: bool = False
    pack: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        batch = x.shape[0]
        if self.pack > 1:
            x, mask = pack_images(x, self.pack, mask)
        x = 2.0 * x - 1.0
        for width in (self.width, 2 * self.width):
            x = nn.leaky_relu(Conv2D(width, 4, 2, kernel_init="xavier_uniform")(x), 0.2)
            x = Dropout(self.dropout_rate, deterministic=not train)(x)
        if self.minibatch_std:
            x = minibatch_std(x, mask)
        x = x.reshape(x.shape[0], -1)
        if self.hidden_units:
            x = nn.leaky_relu(nn.Dense(self.hidden_units)(x), 0.2)
        logits = nn.Dense(1)(x)[:, 0]
        return jnp.repeat(logits, self.pack)[:batch] if self.pack > 1 else logits


def pack_images(x: jax.Array, pack: int, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    """``x: [b, h, w, c] -> [ceil(b / pack), h, w, pack * c]``: images ``pack * i ... pack * i + pack - 1``
    stacked on the channel axis (PacGAN's packing). A batch that is not a multiple of ``pack`` wraps around
    (its first images fill the last group). ``mask: [b]`` becomes one flag a group: whether any member is real."""
    batch = x.shape[0]
    index = jnp.arange(-(-batch // pack) * pack) % batch
    packed = x[index].reshape(-1, pack, *x.shape[1:])
    packed = jnp.moveaxis(packed, 1, -2).reshape(packed.shape[0], *x.shape[1:-1], pack * x.shape[-1])
    return packed, None if mask is None else mask[index].reshape(-1, pack).any(axis=1)


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
    hidden_units: int = 0  # a dense hidden layer in each half (0: none)
    minibatch_std: bool = False  # the batch's spread as a feature of the discriminator
    pack: int = 1  # PacGAN: the discriminator judges this many images at once

    def setup(self) -> None:
        h, w = self.image_shape[:2]
        if self.pack < 1:
            raise ValueError(f"GAN: pack is how many images the discriminator judges at once (1: one at a time, "
                             f"PacGAN uses 2-4), got {self.pack}")
        if self.hidden_units < 0:
            raise ValueError(f"GAN: hidden_units is the size of a dense hidden layer in each half (0 for none), got {self.hidden_units}")
        if h % 4 or w % 4:
            raise ValueError(f"GAN: the generator doubles 4x-downsized maps twice; image height and width must be "
                             f"divisible by 4, got {tuple(self.image_shape)}")
        self.generator = Generator(tuple(self.image_shape), self.generator_width or self.width, self.hidden_units)
        self.discriminator = Discriminator(self.discriminator_width or self.width, self.dropout_rate, self.hidden_units,
                                           self.minibatch_std, self.pack)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"GAN built for images {tuple(self.image_shape)}, got a batch of shape {x.shape}")
        self.generator(jnp.zeros((x.shape[0], self.latent_dim), x.dtype), train=train)  # creates its variables
        return self.discriminator(x, train=train)

    def generate(self, z: jax.Array, *, train: bool = False) -> jax.Array:
        """Images ``[b, *image_shape]`` in ``[0, 1]`` from latents ``z: [b, latent_dim]``."""
        return self.generator(z, train=train)

    def discriminate(self, x: jax.Array, *, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        """Logits ``[b]`` that ``x`` is a real image; ``mask: [b]`` marks the real examples of a padded batch
        (only the minibatch-spread feature looks across examples, and it ignores the others)."""
        return self.discriminator(x, train=train, mask=mask)
