"""Bounding boxes: intersection over union, non-maximum suppression and mean average precision.

Boxes are ``[..., 4]`` corner coordinates ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1``. `box_iou` and
`non_max_suppression` are jittable with fixed output shapes (a detector's post-processing can live inside the
compiled predict step); `mean_average_precision` runs once over a whole evaluation set on the host, as the
PASCAL VOC protocol defines it.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _check_boxes(boxes: jax.Array | np.ndarray, name: str) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must be boxes [..., 4] as (x0, y0, x1, y1), got shape {boxes.shape}")


def _area(boxes, xp):
    return xp.maximum(boxes[..., 2] - boxes[..., 0], 0) * xp.maximum(boxes[..., 3] - boxes[..., 1], 0)


def _iou(a, b, xp):
    # One formula for the compiled path (xp = jax.numpy) and the host-side evaluation (xp = numpy).
    low = xp.maximum(a[..., :2], b[..., :2])
    high = xp.minimum(a[..., 2:], b[..., 2:])
    intersection = xp.prod(xp.maximum(high - low, 0), axis=-1)
    union = _area(a, xp) + _area(b, xp) - intersection
    return xp.where(union > 0, intersection / xp.where(union > 0, union, 1), 0.0)


def box_area(boxes: jax.Array) -> jax.Array:
    """Area of ``boxes [..., 4]`` (0 for a degenerate box)."""
    _check_boxes(boxes, "boxes")
    return _area(jnp.asarray(boxes), jnp)


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Intersection over union of ``a [..., 4]`` and ``b [..., 4]`` (broadcast against each other): 1 for a
    box with itself, 0 for disjoint boxes, and 0 (not NaN) when both are empty."""
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    return _iou(jnp.asarray(a), jnp.asarray(b), jnp)


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """IoU of every box of ``a [n, 4]`` with every box of ``b [m, 4]``: ``[n, m]``."""
    return box_iou(a[:, None, :], b[None, :, :])


def non_max_suppression(boxes: jax.Array, scores: jax.Array, iou_threshold: float = 0.5,
                        score_threshold: float = -jnp.inf) -> jax.Array:
    """Greedy NMS: visit boxes from the highest score down, keep one unless it overlaps an already kept box
    by more than ``iou_threshold``. Returns a keep mask ``[n]`` (fixed shape: jittable); boxes scoring at
    most ``score_threshold`` are dropped first. A box that overlaps nothing is always kept."""
    _check_boxes(boxes, "boxes")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape {boxes.shape[:1]} (one per box), got {scores.shape}")
    order = jnp.argsort(-scores)
    overlaps = pairwise_iou(boxes[order], boxes[order]) > iou_threshold
    candidate = scores[order] > score_threshold

    def visit(keep: jax.Array, i: jax.Array) -> tuple[jax.Array, None]:
        suppressed = jnp.any(keep & overlaps[i])
        return keep.at[i].set(candidate[i] & ~suppressed), None

    keep_sorted, _ = jax.lax.scan(visit, jnp.zeros(boxes.shape[:1], bool), jnp.arange(boxes.shape[0]))
    return jnp.zeros_like(keep_sorted).at[order].set(keep_sorted)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve with precision made monotone (the all-point interpolation of
    PASCAL VOC 2010 onwards): ``sum (r[i] - r[i-1]) * max(p[j] for j >= i)``."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def mean_average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           truths: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                           iou_threshold: float = 0.5) -> dict[str, object]:
    """mAP at ``iou_threshold`` over a set of images (PASCAL VOC matching).

    ``detections[i] = (boxes [k, 4], scores [k], classes [k])`` and ``truths[i] = (boxes [g, 4], classes [g])``
    for image ``i``. Per class, detections are taken from the highest score down; each is a true positive
    when its best-overlapping ground-truth box of that class in its image reaches ``iou_threshold`` and was not
    matched before, a false positive otherwise. Returns ``{"map": mean over classes that have ground truth,
    "per_class": [AP or None]}``.
    """
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections but {len(truths)} of ground truth")
    per_class: list[float | None] = []
    for c in range(num_classes):
        gt = [np.asarray(b, np.float64).reshape(-1, 4)[np.asarray(k).reshape(-1) == c] for b, k in truths]
        total = sum(len(g) for g in gt)
        found = [(float(s), i, np.asarray(b, np.float64)) for i, (boxes, scores, classes) in enumerate(detections)
                 for b, s, k in zip(boxes, scores, classes) if int(k) == c]
        if total == 0:
            per_class.append(None)
            continue
        found.sort(key=lambda d: -d[0])
        matched = [np.zeros(len(g), bool) for g in gt]
        hits = np.zeros(len(found), bool)
        for n, (_, image, box) in enumerate(found):
            if not len(gt[image]):
                continue
            ious = _iou(box[None], gt[image], np)
            best = int(np.argmax(ious))
            if ious[best] >= iou_threshold and not matched[image][best]:
                matched[image][best] = hits[n] = True
        tp = np.cumsum(hits)
        recall = tp / total
        precision = tp / np.arange(1, len(found) + 1)
        per_class.append(average_precision(recall, precision))
    scored = [ap for ap in per_class if ap is not None]
    return {"map": float(np.mean(scored)) if scored else 0.0, "per_class": per_class}
