"""Image augmentation that runs inside `jit`, on whole batches, with one random key per example.

An augmentation is ``augment(key, images) -> images`` for ``images: [batch, h, w, c]``; it preserves shape
and dtype, is a pure function of the key, and its identity parameters return the input unchanged. Configs
name them as strings, e.g. ``("random_crop(padding=2)",)``, composed left to right by `make_augmentation`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.spec import parse_spec

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]


def _check_images(images: jax.Array, name: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} expects images [batch, height, width, channels], got shape {images.shape}")


def random_crop(key: jax.Array, images: jax.Array, padding: int = 2, mode: str = "edge") -> jax.Array:
    """Pad each image by ``padding`` pixels on every side, then crop back to its size at a random offset:
    a random translation by up to ``padding`` pixels in each direction. ``mode`` is how the border is
    filled: ``"edge"`` (repeat the border pixels, right for normalised images whose background is not 0),
    ``"constant"`` (zeros) or ``"reflect"``."""
    _check_images(images, "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop padding must be >= 0, got {padding}")
    if mode not in ("edge", "constant", "reflect"):
        raise ValueError(f"random_crop mode must be 'edge', 'constant' or 'reflect', got {mode!r}")
    if padding == 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array, horizontal: bool = True, vertical: bool = False,
                probability: float = 0.5) -> jax.Array:
    """Mirror each image left-right (and/or top-bottom) with ``probability``; a flip is its own inverse."""
    _check_images(images, "random_flip")
    kh, kv = jax.random.split(key)
    b = images.shape[0]
    if horizontal:
        flip = (jax.random.uniform(kh, (b,)) < probability).reshape(b, 1, 1, 1)
        images = jnp.where(flip, images[:, :, ::-1, :], images)
    if vertical:
        flip = (jax.random.uniform(kv, (b,)) < probability).reshape(b, 1, 1, 1)
        images = jnp.where(flip, images[:, ::-1, :, :], images)
    return images


AUGMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    "random_crop": random_crop,
    "random_flip": random_flip,
}


def make_augmentation(specs: Sequence[str]) -> Augmentation | None:
    """Compose the augmentations named in ``specs`` (applied in order, each with its own key), or None."""
    steps = []
    for spec in specs:
        name, kwargs = parse_spec(spec, AUGMENTATIONS, "augmentation", positional=("key", "images"))
        steps.append((AUGMENTATIONS[name], kwargs))
    if not steps:
        return None

    def augment(key: jax.Array, images: jax.Array) -> jax.Array:
        for (fn, kwargs), k in zip(steps, jax.random.split(key, len(steps))):
            images = fn(k, images, **kwargs)
        return images

    return augment
