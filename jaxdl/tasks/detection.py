"""Detection on a grid of cells (loss name ``yolo``): YOLO v1's loss, objectness and class accuracy while
training, and after training mean average precision on the test images with a figure of the detections."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from jaxdl.losses import LossFn
from jaxdl.metrics import MetricsFn, Sums, as_mask, loss_and_count
from jaxdl.report.dense_outputs import detection_outputs
from jaxdl.tasks.base import Task

COORD_WEIGHT = 5.0  # box errors count more than objectness, which most cells get right (YOLO v1's lambda_coord)
NO_OBJECT_WEIGHT = 0.5  # the many empty cells would otherwise drown the few with objects (lambda_noobj)


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
class DetectionMetrics(Sums):
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
        m = as_mask(mask, loss.shape[0])[:, None, None]
        obj = targets[..., 0] > 0
        right_class = jnp.argmax(predictions[..., 5:], axis=-1) == targets[..., 5].astype(jnp.int32)
        return DetectionMetrics(
            **loss_and_count(loss, m[:, 0, 0]),
            objectness_correct=jnp.sum(((predictions[..., 0] > 0) == obj) & m).astype(jnp.int32),
            cells=(jnp.sum(m) * obj[0].size).astype(jnp.int32),
            class_correct=jnp.sum(right_class & obj & m).astype(jnp.int32), objects=jnp.sum(obj & m).astype(jnp.int32))

    return metrics


class GridDetection(Task):
    """A grid detector's outputs ``[b, g, g, 5 + classes]`` against cell targets ``[b, g, g, 6]``
    (`jaxdl.detection_grid.encode_targets`)."""

    losses = ("yolo",)
    class_outputs = True
    output_extra = 5  # objectness and the box's four numbers come before the class logits

    def loss(self) -> LossFn:
        """`detection_loss`."""
        return detection_loss

    def metrics(self) -> MetricsFn:
        """Loss, objectness accuracy over cells, class accuracy over the cells holding a box."""
        return detection_metrics()

    def write_outputs(self, model: Any, state: Any, data: Any, workdir: pathlib.Path, batch_size: int,
                      test_time: Callable | None, hooks: list[Any]) -> dict[str, Any]:
        """Mean average precision at IoU 0.5 and 0.75 on the test images (added to the test scores) and
        ``detections.png``."""
        return {"test": detection_outputs(model, state, data, workdir, batch_size)}
