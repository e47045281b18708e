"""Grid detection targets, loss, metrics and decoding for `jaxdl.models.detect.GridDetector`.

Layout of a cell's six target values: ``(objectness, x, y, w, h, class)``: ``x, y`` the box centre's offset
inside its cell in ``[0, 1)``, ``w, h`` the box size as a fraction of the image. A box belongs to the cell
holding its centre (the first box wins when two centres share a cell). Predictions are
``(objectness, x, y, w, h)`` logits (sigmoid gives each in ``[0, 1]``) and class logits.
"""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.boxes import non_max_suppression
from jaxdl.metrics import _as_mask, _loss_and_count, _Sums

COORD_WEIGHT = 5.0  # box errors count more than objectness, which most cells get right (YOLO v1's lambda_coord)
NO_OBJECT_WEIGHT = 0.5  # the many empty cells would otherwise drown the few with objects (lambda_noobj)


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


def detection_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """YOLO v1's sum-squared form with cross-entropies: per image, objectness binary cross-entropy over every
    cell (empty cells weighted ``NO_OBJECT_WEIGHT``), plus over the cells holding a box ``COORD_WEIGHT`` times
    the squared error of the centre and of the square roots of width and height, plus the class cross-entropy.
    ``predictions [b, g, g, 5 + C]``, ``targets [b, g, g, 6]``; returns ``[b]``."""
    if targets.shape[:-1] != predictions.shape[:-1] or targets.shape[-1] != 6:
        raise ValueError(f"detection_loss: targets must be [b, g, g, 6] over predictions' grid {predictions.shape[:-1]}, "
                         f"got {targets.shape}")
    obj = targets[..., 0]
    logit = predictions[..., 0]
    bce = jnp.maximum(logit, 0) - logit * obj + jnp.log1p(jnp.exp(-jnp.abs(logit)))
    obj_loss = jnp.sum(bce * jnp.where(obj > 0, 1.0, NO_OBJECT_WEIGHT), axis=(1, 2))
    box = jax.nn.sigmoid(predictions[..., 1:5])
    centre = jnp.sum(jnp.square(box[..., :2] - targets[..., 1:3]), axis=-1)
    size = jnp.sum(jnp.square(jnp.sqrt(box[..., 2:4]) - jnp.sqrt(targets[..., 3:5])), axis=-1)
    labels = targets[..., 5].astype(jnp.int32)
    class_loss = -jnp.take_along_axis(jax.nn.log_softmax(predictions[..., 5:], axis=-1), labels[..., None], axis=-1)[..., 0]
    return obj_loss + jnp.sum(obj * (COORD_WEIGHT * (centre + size) + class_loss), axis=(1, 2))


@flax.struct.dataclass
class DetectionMetrics(_Sums):
    """Sums for a grid detector: ``loss_sum``, ``count`` (images), cells whose objectness is right, and the
    classes right among the cells holding a box."""

    loss_sum: jax.Array
    count: jax.Array
    objectness_correct: jax.Array
    cells: jax.Array
    class_correct: jax.Array
    objects: jax.Array

    def compute(self) -> dict[str, float]:
        """Mean loss, ``objectness_accuracy`` over cells and ``class_accuracy`` over cells holding a box."""
        host = jax.device_get(self)
        return {"loss": float(host.loss_sum) / max(int(host.count), 1),
                "objectness_accuracy": int(host.objectness_correct) / max(int(host.cells), 1),
                "class_accuracy": int(host.class_correct) / max(int(host.objects), 1), "count": int(host.count)}


def detection_metrics() -> Callable[..., DetectionMetrics]:
    """Return ``metrics(predictions, targets, loss, mask) -> DetectionMetrics``."""

    def metrics(predictions: jax.Array, targets: jax.Array, loss: jax.Array, mask: jax.Array | None) -> DetectionMetrics:
        m = _as_mask(mask, loss.shape[0])[:, None, None]
        obj = targets[..., 0] > 0
        right_class = jnp.argmax(predictions[..., 5:], axis=-1) == targets[..., 5].astype(jnp.int32)
        return DetectionMetrics(
            **_loss_and_count(loss, m[:, 0, 0]),
            objectness_correct=jnp.sum(((predictions[..., 0] > 0) == obj) & m).astype(jnp.int32),
            cells=(jnp.sum(m) * obj[0].size).astype(jnp.int32),
            class_correct=jnp.sum(right_class & obj & m).astype(jnp.int32), objects=jnp.sum(obj & m).astype(jnp.int32))

    return metrics


def decode_predictions(predictions: jax.Array, image_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Every cell's box ``[b, g*g, 4]`` in pixels, score ``sigmoid(objectness) * max class probability`` and class."""
    b, g = predictions.shape[0], predictions.shape[1]
    box = jax.nn.sigmoid(predictions[..., 1:5])
    rows, cols = jnp.meshgrid(jnp.arange(g), jnp.arange(g), indexing="ij")
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
