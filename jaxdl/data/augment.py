"""Image augmentation that runs inside `jit`, on whole batches, with one random key per example.

An augmentation is ``augment(key, images) -> images`` for ``images: [batch, h, w, c]``; it preserves shape
and dtype, is a pure function of the key, and its identity parameters return the input unchanged. Configs
name them as strings, e.g. ``("random_crop(padding=2)", "cutout(size=8)")``, composed left to right by
`make_augmentation`. ``mixup`` also mixes the labels, so composed augmentations map ``(key, images, labels)``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.util.spec import parse_spec

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]
LabelledAugmentation = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _check_images(images: jax.Array, name: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"{name} expects images [batch, height, width, channels], got shape {images.shape}")


PAD_MODES = ("edge", "constant", "reflect")


def check_pad_mode(mode: str, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the valid modes unless ``mode`` is one of ``PAD_MODES``."""
    if mode not in PAD_MODES:
        raise ValueError(f"{name} mode must be one of {list(PAD_MODES)}, got {mode!r}")


def pad_border(images: jax.Array, padding: int, mode: str, name: str) -> jax.Array:
    """``images`` padded by ``padding`` pixels on every side, the border filled by ``mode`` (one of
    ``PAD_MODES``); ``name`` is the transform whose arguments are checked, for the error message."""
    _check_images(images, name)
    if padding < 0:
        raise ValueError(f"{name} padding must be >= 0, got {padding}")
    check_pad_mode(mode, name)
    return jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)


def random_crop(key: jax.Array, images: jax.Array, padding: int = 2, mode: str = "edge") -> jax.Array:
    """Pad each image by ``padding`` pixels on every side, then crop back to its size at a random offset:
    a random translation by up to ``padding`` pixels in each direction. ``mode`` is how the border is
    filled: ``"edge"`` (repeat the border pixels, right for normalised images whose background is not 0),
    ``"constant"`` (zeros) or ``"reflect"``."""
    padded = pad_border(images, padding, mode, "random_crop")
    if padding == 0:
        return images
    b, h, w, c = images.shape
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


def affine_transform(images: jax.Array, angles: jax.Array, shifts: jax.Array, zooms: jax.Array,
                     mode: str = "nearest") -> jax.Array:
    """Rotate each image by ``angles[i]`` radians (counter-clockwise), zoom by ``zooms[i]`` (> 1 enlarges) and
    shift by ``shifts[i] = (dy, dx)`` pixels, about the image centre, with bilinear interpolation.

    Each output pixel reads the input at the inverse-transformed position; positions outside the image take
    the nearest border pixel (``mode="nearest"``) or 0 (``"constant"``). Integer shifts and quarter turns
    land on pixel centres, so they move pixels exactly.
    """
    _check_images(images, "affine_transform")
    b, h, w, c = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

    def warp(image, angle, shift, zoom):
        # Output (y, x) <- input at R(-angle) ((y, x) - centre - shift) / zoom + centre.
        y, x = yy - cy - shift[0], xx - cx - shift[1]
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        src_y = (cos * y + sin * x) / zoom + cy
        src_x = (-sin * y + cos * x) / zoom + cx
        channel = lambda ch: jax.scipy.ndimage.map_coordinates(ch, [src_y, src_x], order=1, mode=mode)  # noqa: E731
        return jax.vmap(channel, in_axes=2, out_axes=2)(image.astype(jnp.float32)).astype(image.dtype)

    return jax.vmap(warp)(images, angles.astype(jnp.float32), shifts.astype(jnp.float32), zooms.astype(jnp.float32))


def random_affine(key: jax.Array, images: jax.Array, degrees: float = 0.0, translate: float = 0.0,
                  zoom: float = 0.0, mode: str = "nearest") -> jax.Array:
    """A random rotation by up to ±``degrees``, shift by up to ±``translate`` of the image size and zoom by a
    factor in ``[1 - zoom, 1 + zoom]``, drawn per example (see `affine_transform`). All zero: the input."""
    _check_images(images, "random_affine")
    if degrees < 0 or translate < 0 or not 0 <= zoom < 1:
        raise ValueError(f"random_affine needs degrees >= 0, translate >= 0 and 0 <= zoom < 1, got {degrees}, {translate}, {zoom}")
    if mode not in ("nearest", "constant"):
        raise ValueError(f"random_affine mode must be 'nearest' or 'constant', got {mode!r}")
    if degrees == translate == zoom == 0:
        return images
    b, h, w, _ = images.shape
    ka, ks, kz = jax.random.split(key, 3)
    angles = jnp.deg2rad(jax.random.uniform(ka, (b,), minval=-degrees, maxval=degrees))
    shifts = jax.random.uniform(ks, (b, 2), minval=-translate, maxval=translate) * jnp.array([[h, w]], jnp.float32)
    zooms = jax.random.uniform(kz, (b,), minval=1.0 - zoom, maxval=1.0 + zoom)
    return affine_transform(images, angles, shifts, zooms, mode)


def random_rotation(key: jax.Array, images: jax.Array, degrees: float = 15.0) -> jax.Array:
    """Rotate each image by a random angle in ``[-degrees, degrees]``."""
    return random_affine(key, images, degrees=degrees)


def random_translation(key: jax.Array, images: jax.Array, fraction: float = 0.1) -> jax.Array:
    """Shift each image by up to ``fraction`` of its height and width in each direction (sub-pixel, bilinear)."""
    return random_affine(key, images, translate=fraction)


def random_zoom(key: jax.Array, images: jax.Array, fraction: float = 0.1) -> jax.Array:
    """Scale each image about its centre by a factor in ``[1 - fraction, 1 + fraction]``."""
    return random_affine(key, images, zoom=fraction)


def brightness_contrast(key: jax.Array, images: jax.Array, brightness: float = 0.2, contrast: float = 0.2) -> jax.Array:
    """Per example, scale the deviation from the image's mean by a factor in ``[1 - contrast, 1 + contrast]``
    and add an offset in ``[-brightness, brightness]`` (in the images' own units, e.g. of a normalised pixel)."""
    _check_images(images, "brightness_contrast")
    if brightness < 0 or not 0 <= contrast < 1:
        raise ValueError(f"brightness_contrast needs brightness >= 0 and 0 <= contrast < 1, got {brightness}, {contrast}")
    if brightness == contrast == 0:
        return images
    b = images.shape[0]
    kb, kc = jax.random.split(key)
    offset = jax.random.uniform(kb, (b, 1, 1, 1), images.dtype, minval=-brightness, maxval=brightness)
    factor = jax.random.uniform(kc, (b, 1, 1, 1), images.dtype, minval=1.0 - contrast, maxval=1.0 + contrast)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return ((images - mean) * factor + mean + offset).astype(images.dtype)


def cutout(key: jax.Array, images: jax.Array, size: int = 8, probability: float = 1.0, fill: float = 0.0) -> jax.Array:
    """With ``probability``, set a ``size`` x ``size`` square (clipped at the border) at a random centre of each
    image to ``fill``: the model must not rely on any one region."""
    _check_images(images, "cutout")
    if size < 0 or not 0 <= probability <= 1:
        raise ValueError(f"cutout needs size >= 0 and probability in [0, 1], got {size}, {probability}")
    if size == 0 or probability == 0:
        return images
    b, h, w, _ = images.shape
    kc, kp = jax.random.split(key)
    centre = jax.random.randint(kc, (b, 2), 0, jnp.array([[h, w]]))
    top, left = (centre[:, 0] - size // 2)[:, None, None], (centre[:, 1] - size // 2)[:, None, None]
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    apply = (jax.random.uniform(kp, (b,)) < probability)[:, None, None]
    return jnp.where((inside & apply)[..., None], jnp.asarray(fill, images.dtype), images)


def random_erasing(key: jax.Array, images: jax.Array, probability: float = 0.5, min_area: float = 0.02,
                   max_area: float = 0.33, max_aspect: float = 3.3, noise: bool = True) -> jax.Array:
    """Random erasing (Zhong et al., 2020): with ``probability``, replace a rectangle of each image by noise.
    Its area is a uniform fraction in ``[min_area, max_area]`` of the image, its aspect ratio (height / width)
    log-uniform in ``[1 / max_aspect, max_aspect]`` (sides clipped to the image), its position uniform over
    the places it fits. ``noise`` fills it with standard normal values (normalised pixels), else with 0.
    Unlike `cutout`'s fixed square, the varied shapes hide parts as small as a collar or as large as a sleeve."""
    _check_images(images, "random_erasing")
    if not 0 <= probability <= 1 or not 0 < min_area <= max_area <= 1 or max_aspect < 1:
        raise ValueError("random_erasing needs probability in [0, 1], 0 < min_area <= max_area <= 1 and "
                         f"max_aspect >= 1, got {probability}, {min_area}, {max_area}, {max_aspect}")
    if probability == 0:
        return images
    b, h, w, c = images.shape
    k_area, k_aspect, k_top, k_left, k_apply, k_noise = jax.random.split(key, 6)
    area = jax.random.uniform(k_area, (b,), minval=min_area, maxval=max_area) * (h * w)
    log_aspect = jax.random.uniform(k_aspect, (b,), minval=-jnp.log(max_aspect), maxval=jnp.log(max_aspect))
    aspect = jnp.exp(log_aspect)
    height = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, h).astype(jnp.int32)
    width = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, w).astype(jnp.int32)
    # floor(u * (number of places)) is uniform over the places the rectangle fits.
    top = jnp.floor(jax.random.uniform(k_top, (b,)) * (h - height + 1).astype(jnp.float32)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(k_left, (b,)) * (w - width + 1).astype(jnp.float32)).astype(jnp.int32)
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + height)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + width)[:, None, None]))
    apply = (jax.random.uniform(k_apply, (b,)) < probability)[:, None, None]
    fill = jax.random.normal(k_noise, images.shape, images.dtype) if noise else jnp.zeros((), images.dtype)
    return jnp.where((inside & apply)[..., None], fill, images)


def mixup(key: jax.Array, images: jax.Array, labels: jax.Array, alpha: float = 0.2) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al., 2018): each example becomes ``l x_i + (1 - l) x_j`` with a random partner ``j`` from
    the batch and ``l ~ Beta(alpha, alpha)`` per example; ``labels`` (probability rows ``[batch, classes]``)
    mix the same way. ``alpha = 0`` returns the inputs."""
    if alpha < 0:
        raise ValueError(f"mixup alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return images, labels
    kl, kp = jax.random.split(key)
    b = images.shape[0]
    lam = jax.random.beta(kl, alpha, alpha, (b,))
    partner = jax.random.permutation(kp, b)
    mix = lambda a: (lam.reshape((b,) + (1,) * (a.ndim - 1)) * a  # noqa: E731
                     + (1 - lam).reshape((b,) + (1,) * (a.ndim - 1)) * a[partner]).astype(a.dtype)
    return mix(images), mix(labels)


AUGMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    "random_crop": random_crop,
    "random_flip": random_flip,
    "random_affine": random_affine,
    "random_rotation": random_rotation,
    "random_translation": random_translation,
    "random_zoom": random_zoom,
    "brightness_contrast": brightness_contrast,
    "cutout": cutout,
    "random_erasing": random_erasing,
}
LABEL_AUGMENTATIONS = {"mixup": mixup}  # transform images and labels together


def make_augmentation(specs: Sequence[str], num_classes: int | None = None) -> LabelledAugmentation | None:
    """Compose the augmentations named in ``specs`` into ``augment(key, images, labels) -> (images, labels)``
    (applied in order, each with its own key), or None when ``specs`` is empty. Image transforms leave the
    labels alone; ``mixup`` mixes them too, turning integer labels into probability rows over ``num_classes``."""
    registry = {**AUGMENTATIONS, **LABEL_AUGMENTATIONS}
    steps = []
    for spec in specs:
        name, kwargs = parse_spec(spec, registry, "augmentation", positional=("key", "images", "labels"))
        if name in LABEL_AUGMENTATIONS and not num_classes:
            raise ValueError(f"augmentation {name!r} mixes labels and needs the number of classes")
        steps.append((name, registry[name], kwargs))
    if not steps:
        return None

    def augment(key: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        for (name, fn, kwargs), k in zip(steps, jax.random.split(key, len(steps))):
            if name in LABEL_AUGMENTATIONS:
                if jnp.issubdtype(labels.dtype, jnp.integer):
                    labels = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
                images, labels = fn(k, images, labels, **kwargs)
            else:
                images = fn(k, images, **kwargs)
        return images, labels

    return augment
