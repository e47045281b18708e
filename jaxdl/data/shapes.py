"""Segmentation data generated locally from a seed (no download): shapes on noisy backgrounds, exact masks.

Each image is ``[size, size, 1]`` in ``[0, 1]``: a smooth random background gradient plus Gaussian noise, with
1 to ``max_shapes`` filled circles, squares and triangles of random size, position and brightness drawn on
it, never touching one another. The mask ``[size, size]`` holds each pixel's class: 0 background,
1 circle, 2 square, 3 triangle; it is computed from the same geometry that draws the shapes, so it is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.pipeline import ArrayDataset

CLASSES = ("background", "circle", "square", "triangle")


def _shape_mask(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels ``[size, size]`` (bool) covered by one random shape of ``kind`` (1 circle, 2 square, 3 triangle)."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    radius = rng.uniform(0.1, 0.22) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    if kind == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    if kind == 2:
        return (np.abs(yy - cy) <= radius * 0.85) & (np.abs(xx - cx) <= radius * 0.85)
    # An upward triangle inscribed in the circle: below the top vertex's two edges, above the base.
    top, base = cy - radius, cy + radius * 0.5
    half_width = (yy - top) / (base - top) * radius * 0.87
    return (yy >= top) & (yy <= base) & (np.abs(xx - cx) <= half_width)


def _grown(covered: np.ndarray, margin: int = 2) -> np.ndarray:
    """``covered`` dilated by ``margin`` pixels (a square neighbourhood)."""
    grown = covered.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            grown |= np.roll(np.roll(covered, dy, axis=0), dx, axis=1)
    return grown


def shapes_images(count: int, size: int = 64, max_shapes: int = 3, noise: float = 0.08,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images ``[count, size, size, 1]`` float32 in ``[0, 1]`` and masks ``[count, size, size]`` int32."""
    if count < 0 or size < 8 or max_shapes < 1:
        raise ValueError(f"need count >= 0, size >= 8 and max_shapes >= 1, got {count}, {size}, {max_shapes}")
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 1), np.float32)
    masks = np.zeros((count, size, size), np.int32)
    ramp = np.linspace(-1, 1, size)
    for i in range(count):
        gy, gx = rng.uniform(-0.1, 0.1, 2)
        image = rng.uniform(0.35, 0.55) + gy * ramp[:, None] + gx * ramp[None, :]  # within [0.15, 0.75]
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            kind = int(rng.integers(1, len(CLASSES)))
            for _ in range(20):  # shapes never touch: two of one brightness would merge into one blob
                covered = _shape_mask(kind, size, rng)
                if not (masks[i] > 0)[_grown(covered)].any():
                    break
            else:
                continue
            # Brighter or darker than the background, never equal to it: the noise alone cannot hide a shape.
            image[covered] = rng.choice([rng.uniform(0.0, 0.12), rng.uniform(0.78, 1.0)])
            masks[i][covered] = kind
        images[i, ..., 0] = np.clip(image + rng.normal(0, noise, (size, size)), 0, 1)
    return images, masks


@register_dataset("shapes")
def load_shapes(config: Any) -> DatasetSplits:
    """Train / validation / test shape images (``train_limit`` default 2,000; ``eval_limit`` default 500 each),
    each split from its own seed derived from ``data.seed``; ``image_size`` (64) and ``max_objects`` (3 shapes at most)."""
    seed = int(option(config, "seed", 0))
    size, max_shapes = int(option(config, "image_size", 64)), int(option(config, "max_objects", 3))
    counts = (int(option(config, "train_limit", 2000)), int(option(config, "eval_limit", 500)), int(option(config, "eval_limit", 500)))
    splits = [ArrayDataset(*shapes_images(n, size, max_shapes, seed=seed * 3 + k)) for k, n in enumerate(counts)]
    return DatasetSplits(splits[0], splits[1], splits[2], num_classes=len(CLASSES), class_names=CLASSES, name="shapes")
