"""Detection data built locally from MNIST: canvases with several digits at random positions and scales.

Each canvas ``[size, size, 1]`` in ``[0, 1]`` holds 1 to ``max_digits`` MNIST digits, each resized (bilinear)
to a random side in ``scale`` and pasted where it overlaps no earlier digit's box. The box of a digit is
the tight box of its pasted ink (pixels above ``INK``), so boxes are exact; its class is the digit's label.
Boxes are padded to ``max_digits`` per canvas: ``boxes [n, max_digits, 4]`` as ``(x0, y0, x1, y1)`` in pixels
(``x1``/``y1`` exclusive) and ``classes [n, max_digits]`` with -1 for no box.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.images import read_mnist
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.detection_grid import encode_targets

INK = 0.2


def _interpolation(out_size: int, in_size: int) -> np.ndarray:
    """The ``[out, in]`` matrix of bilinear interpolation weights (pixel centres aligned, edges clamped)."""
    position = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    low = np.clip(np.floor(position).astype(int), 0, in_size - 1)
    high = np.clip(low + 1, 0, in_size - 1)
    frac = np.clip(position - low, 0.0, 1.0)
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.arange(out_size), low), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), high), frac)
    return weights


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a ``[h, w]`` image to ``[height, width]`` (two small matrix products)."""
    return _interpolation(height, image.shape[0]) @ image @ _interpolation(width, image.shape[1]).T


def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)


def digit_canvases(digits: np.ndarray, labels: np.ndarray, count: int, size: int = 64, max_digits: int = 3,
                   scale: tuple[int, int] = (14, 32), seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` canvases from ``digits [m, 28, 28(, 1)]`` in ``[0, 1]`` with ``labels [m]``: returns
    ``(canvases [count, size, size, 1] float32, boxes [count, max_digits, 4] float32, classes [count, max_digits] int32)``."""
    digits = np.asarray(digits, np.float32).reshape(len(digits), digits.shape[1], digits.shape[2])
    if len(digits) != len(labels) or not len(digits):
        raise ValueError(f"need as many labels as digits (and at least one), got {len(digits)} and {len(labels)}")
    if not 4 <= scale[0] <= scale[1] <= size:
        raise ValueError(f"scale {scale} must satisfy 4 <= low <= high <= size {size}")
    rng = np.random.default_rng(seed)
    canvases = np.zeros((count, size, size, 1), np.float32)
    boxes = np.zeros((count, max_digits, 4), np.float32)
    classes = np.full((count, max_digits), -1, np.int32)
    for i in range(count):
        placed: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, max_digits + 1))):
            k = int(rng.integers(len(digits)))
            side = int(rng.integers(scale[0], scale[1] + 1))
            patch = np.clip(resize_image(digits[k], side, side), 0.0, 1.0)
            rows, cols = np.nonzero(patch > INK)
            if not len(rows):
                continue
            for _ in range(20):  # a free spot for the digit's ink box
                top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
                box = np.array([left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1], np.float32)
                if not _overlaps(box, placed):
                    break
            else:
                continue
            view = canvases[i, top:top + side, left:left + side, 0]
            np.maximum(view, patch, out=view)
            boxes[i, len(placed)], classes[i, len(placed)] = box, labels[k]
            placed.append(box)
    return canvases, boxes, classes


@dataclasses.dataclass
class DetectionDataset(ArrayDataset):
    """Canvases ``x``, cell targets ``y [n, grid, grid, 6]`` (what the loss reads) and the exact boxes and
    classes they encode (what mean average precision is computed against)."""

    boxes: np.ndarray | None = None
    classes: np.ndarray | None = None

    def take(self, indices: np.ndarray) -> "DetectionDataset":
        """The canvases at ``indices``, in that order, with their boxes."""
        return dataclasses.replace(self, x=self.x[indices], y=self.y[indices], boxes=self.boxes[indices],
                                   classes=self.classes[indices])


@register_dataset("digit_canvases")
def load_digit_canvases(config: Any) -> DatasetSplits:
    """Canvases of MNIST digits for detection: ``train_limit`` (default 10,000) canvases from MNIST's training
    digits, ``eval_limit`` (1,000) each from its validation and test digits (no digit image is shared between
    splits); ``image_size`` (64), ``max_objects`` (3 digits at most) and ``grid`` (8 cells a side, the detector's output)."""
    seed = int(option(config, "seed", 0))
    size, grid = int(option(config, "image_size", 64)), int(option(config, "grid", 8))
    max_digits = int(option(config, "max_objects", 3))
    counts = {"train": int(option(config, "train_limit", 10000))}
    counts["validation"] = counts["test"] = int(option(config, "eval_limit", 1000))
    parts = read_mnist()
    splits = []
    for k, name in enumerate(("train", "validation", "test")):
        digits, labels = parts[name]
        canvases, boxes, classes = digit_canvases(digits, labels, counts[name], size, max_digits, seed=seed * 3 + k)
        splits.append(DetectionDataset(canvases, encode_targets(boxes, classes, size, grid), boxes=boxes, classes=classes))
    return DatasetSplits(*splits, num_classes=10, class_names=tuple(str(i) for i in range(10)), name="digit_canvases")
