"""The cell layout of a grid detector (`jaxdl.models.detect.GridDetector`): ground-truth boxes encoded into
cell targets, predictions decoded back into boxes, and per-class non-maximum suppression.

Layout of a cell's six target values: ``(objectness, x, y, w, h, class)``: ``x, y`` the box centre's offset
inside its cell in ``[0, 1)``, ``w, h`` the box size as a fraction of the image. A box belongs to the cell
holding its centre (the first box wins when two centres share a cell). Predictions are
``(objectness, x, y, w, h)`` logits (sigmoid gives each in ``[0, 1]``) and class logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.boxes import non_max_suppression


def encode_targets(boxes: np.ndarray, classes: np.ndarray, image_size: int, grid: int) -> np.ndarray:
    """Cell targets ``[n, grid, grid, 6]`` float32 from ``boxes [n, k, 4]`` (pixels, ``(x0, y0, x1, y1)``) and
    ``classes [n, k]`` (-1: no box)."""
    cell = image_size / grid
    targets = np.zeros((len(boxes), grid, grid, 6), np.float32)
    for n, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
        for (x0, y0, x1, y1), c in zip(image_boxes, image_classes):
            if c < 0:
                continue
            cx, cy = (x0 + x1) / 2 / cell, (y0 + y1) / 2 / cell
            i, j = min(int(cy), grid - 1), min(int(cx), grid - 1)
            if targets[n, i, j, 0]:
                continue
            targets[n, i, j] = (1.0, cx - j, cy - i, (x1 - x0) / image_size, (y1 - y0) / image_size, c)
    return targets


def decode_predictions(predictions: jax.Array, image_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Every cell's box ``[b, g*g, 4]`` in pixels, score ``sigmoid(objectness) * max class probability`` and class."""
    b, g = predictions.shape[0], predictions.shape[1]
    box = jax.nn.sigmoid(predictions[..., 1:5])
    rows, cols = jnp.meshgrid(jnp.arange(g, dtype=box.dtype), jnp.arange(g, dtype=box.dtype), indexing="ij")
    cx = (cols[None] + box[..., 0]) * image_size / g
    cy = (rows[None] + box[..., 1]) * image_size / g
    w, h = box[..., 2] * image_size, box[..., 3] * image_size
    corners = jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1).reshape(b, g * g, 4)
    probabilities = jax.nn.softmax(predictions[..., 5:], axis=-1)
    scores = (jax.nn.sigmoid(predictions[..., 0]) * jnp.max(probabilities, axis=-1)).reshape(b, g * g)
    return corners, scores, jnp.argmax(probabilities, axis=-1).reshape(b, g * g)


def detect(predictions: jax.Array, image_size: int, iou_threshold: float = 0.5,
           score_threshold: float = 0.05) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Decoded boxes, scores, classes and a keep mask ``[b, g*g]`` after per-class NMS (jittable): a box is
    kept when it scores above ``score_threshold`` and no better box of its class overlaps it by more than
    ``iou_threshold``."""
    boxes, scores, classes = decode_predictions(predictions, image_size)
    # Per-class NMS in one pass: boxes of different classes are moved apart so they never overlap.
    offset = (classes * 2 * image_size)[..., None].astype(boxes.dtype)
    keep = jax.vmap(lambda b, s: non_max_suppression(b, s, iou_threshold, score_threshold))(boxes + offset, scores)
    return boxes, scores, classes, keep
