"""Metrics as accumulable, jittable pytrees.

A metrics value holds *sums* (loss sum, example count, confusion matrix), never averages, so batches merge
by addition inside or outside `jit`, padded examples are excluded by a mask, and the final numbers count
every real example exactly once whatever the batch size. ``compute()`` turns the sums into numbers.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

_S = TypeVar("_S", bound="Sums")
MetricsFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], "Metrics"]


def as_mask(mask: jax.Array | None, batch: int) -> jax.Array:
    """``mask`` as booleans ``[batch]``; every row real when it is None."""
    return jnp.ones((batch,), jnp.bool_) if mask is None else mask.astype(jnp.bool_)


def loss_and_count(loss: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """The two sums every metrics value starts with: the loss over unmasked rows and their number."""
    return {"loss_sum": jnp.sum(jnp.where(mask, loss, 0.0)).astype(jnp.float32), "count": jnp.sum(mask).astype(jnp.int32)}


class Sums:
    """Base for metrics pytrees whose every leaf is a sum, so two values merge by adding leaf by leaf."""

    def merge(self: _S, other: _S) -> _S:
        """Sum two metrics values (associative and commutative), inside or outside ``jit``."""
        return jax.tree.map(jnp.add, self, other)


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from ``confusion[true, predicted]`` counts (zero where a
    ratio is undefined, as scikit-learn does)."""
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    predicted, actual = c.sum(axis=0), c.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(np.int64)}


@flax.struct.dataclass
class ClassificationMetrics(Sums):
    """Sums for classification: ``loss_sum``, ``count`` and ``confusion[true, predicted]`` (``[C, C]``)."""

    loss_sum: jax.Array
    count: jax.Array
    confusion: jax.Array

    @classmethod
    def empty(cls, num_classes: int) -> "ClassificationMetrics":
        """Zero sums for ``num_classes`` classes."""
        return cls(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((num_classes, num_classes), jnp.int32))

    @classmethod
    def from_batch(
        cls,
        loss: jax.Array,
        predictions: jax.Array,
        labels: jax.Array,
        num_classes: int,
        mask: jax.Array | None = None,
    ) -> "ClassificationMetrics":
        """Sums over one batch: ``loss: [batch]``, integer ``predictions`` and ``labels: [batch]``; masked rows skipped."""
        m = as_mask(mask, loss.shape[0])
        true = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * m[:, None].astype(jnp.int32)
        pred = jax.nn.one_hot(predictions, num_classes, dtype=jnp.int32)
        return cls(
            **loss_and_count(loss, m),
            confusion=true.T @ pred,
        )

    def per_class(self) -> dict[str, np.ndarray]:
        """Per-class precision, recall, F1 and support (zero where undefined, as scikit-learn does)."""
        return per_class_scores(jax.device_get(self.confusion))

    def compute(self) -> dict[str, float]:
        """Mean loss, accuracy and macro/micro-averaged precision, recall and F1 as Python floats."""
        host = jax.device_get(self)
        count = int(host.count)
        c = np.asarray(host.confusion, np.float64)
        per = self.per_class()
        tp = np.trace(c)
        total = c.sum()
        micro = float(tp / total) if total else 0.0
        return {
            "loss": float(host.loss_sum) / max(count, 1),
            "accuracy": micro,
            "precision_macro": float(per["precision"].mean()),
            "recall_macro": float(per["recall"].mean()),
            "f1_macro": float(per["f1"].mean()),
            # Single-label multiclass: every false positive is another class's false negative, so micro
            # precision, recall and F1 all equal accuracy.
            "precision_micro": micro,
            "recall_micro": micro,
            "f1_micro": micro,
            "count": count,
        }


@flax.struct.dataclass
class RegressionMetrics(Sums):
    """Sums for regression: ``loss_sum``, ``count``, absolute and squared error sums."""

    loss_sum: jax.Array
    count: jax.Array
    abs_error_sum: jax.Array
    sq_error_sum: jax.Array

    @classmethod
    def from_batch(
        cls, loss: jax.Array, predictions: jax.Array, targets: jax.Array, mask: jax.Array | None = None
    ) -> "RegressionMetrics":
        """Sums over one batch; errors are averaged over each example's non-batch axes first."""
        m = as_mask(mask, loss.shape[0])
        err = (predictions - targets.astype(predictions.dtype)).reshape(loss.shape[0], -1)
        return cls(
            **loss_and_count(loss, m),
            abs_error_sum=jnp.sum(jnp.where(m, jnp.abs(err).mean(axis=1), 0.0)).astype(jnp.float32),
            sq_error_sum=jnp.sum(jnp.where(m, jnp.square(err).mean(axis=1), 0.0)).astype(jnp.float32),
        )

    def compute(self) -> dict[str, float]:
        """Mean loss, MAE and RMSE as Python floats."""
        host = jax.device_get(self)
        n = max(int(host.count), 1)
        return {
            "loss": float(host.loss_sum) / n,
            "mae": float(host.abs_error_sum) / n,
            "rmse": float(np.sqrt(float(host.sq_error_sum) / n)),
            "count": int(host.count),
        }


@flax.struct.dataclass
class SequenceMetrics(Sums):
    """Sums for per-step predictions (taggers, seq2seq): ``loss_sum`` and ``count`` over sequences, correct and
    counted steps, and ``exact_sum``, the sequences whose every counted step is right."""

    loss_sum: jax.Array
    count: jax.Array
    correct_steps: jax.Array
    counted_steps: jax.Array
    exact_sum: jax.Array

    @classmethod
    def from_batch(cls, loss: jax.Array, predictions: jax.Array, labels: jax.Array, ignore_label: int = -1,
                   mask: jax.Array | None = None) -> "SequenceMetrics":
        """Sums over one batch: ``loss: [batch]``, ``predictions`` and ``labels: [batch, time]``; steps labelled
        ``ignore_label`` and masked rows are not counted."""
        m = as_mask(mask, loss.shape[0])
        counted = (labels != ignore_label) & m[:, None]
        right = (predictions == labels) & counted
        return cls(
            **loss_and_count(loss, m),
            correct_steps=jnp.sum(right).astype(jnp.int32),
            counted_steps=jnp.sum(counted).astype(jnp.int32),
            exact_sum=jnp.sum(m & jnp.all(right | ~counted, axis=1)).astype(jnp.int32),
        )

    def compute(self) -> dict[str, float]:
        """Mean loss, per-step ``accuracy`` and sequence ``exact_match`` as Python floats."""
        host = jax.device_get(self)
        n = max(int(host.count), 1)
        return {
            "loss": float(host.loss_sum) / n,
            "accuracy": int(host.correct_steps) / max(int(host.counted_steps), 1),
            "exact_match": int(host.exact_sum) / n,
            "count": int(host.count),
        }


@flax.struct.dataclass
class SegmentationMetrics(Sums):
    """Sums for per-pixel classification: ``loss_sum``, ``count`` (images) and ``confusion[true, predicted]``
    over every pixel (``[C, C]``)."""

    loss_sum: jax.Array
    count: jax.Array
    confusion: jax.Array

    @classmethod
    def from_batch(cls, loss: jax.Array, predictions: jax.Array, labels: jax.Array, num_classes: int,
                   mask: jax.Array | None = None) -> "SegmentationMetrics":
        """Sums over one batch: ``loss: [batch]``, integer ``predictions`` and ``labels: [batch, h, w]``."""
        m = as_mask(mask, loss.shape[0])
        true = jax.nn.one_hot(labels.reshape(-1), num_classes, dtype=jnp.int32)
        true = true * jnp.repeat(m, labels[0].size)[:, None].astype(jnp.int32)
        pred = jax.nn.one_hot(predictions.reshape(-1), num_classes, dtype=jnp.int32)
        return cls(**loss_and_count(loss, m), confusion=true.T @ pred)

    def iou(self) -> np.ndarray:
        """Per-class intersection over union ``TP / (TP + FP + FN)`` (NaN for a class in neither map)."""
        c = np.asarray(jax.device_get(self.confusion), np.float64)
        tp = np.diag(c)
        union = c.sum(axis=0) + c.sum(axis=1) - tp
        return np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)

    def compute(self) -> dict[str, float]:
        """Mean loss, pixel ``accuracy``, ``mean_iou`` (over the classes present) and ``iou_<class>``."""
        host = jax.device_get(self)
        c = np.asarray(host.confusion, np.float64)
        iou = self.iou()
        out = {"loss": float(host.loss_sum) / max(int(host.count), 1),
               "accuracy": float(np.trace(c) / c.sum()) if c.sum() else 0.0,
               "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0}
        out.update({f"iou_{k}": float(v) for k, v in enumerate(iou) if np.isfinite(v)})
        out["count"] = int(host.count)
        return out


Metrics = ClassificationMetrics | RegressionMetrics | SequenceMetrics | SegmentationMetrics


def predicted_classes(logits: jax.Array) -> jax.Array:
    """Class predictions: argmax over the last axis, or ``logit > 0`` for a single binary logit."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return (logits.reshape(logits.shape[0]) > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def classification_metrics(num_classes: int) -> MetricsFn:
    """Return ``metrics(logits, labels, loss, mask) -> ClassificationMetrics`` for ``num_classes`` classes."""
    if num_classes < 2:
        raise ValueError(f"classification needs num_classes >= 2, got {num_classes}")

    def metrics(logits: jax.Array, labels: jax.Array, loss: jax.Array, mask: jax.Array | None) -> ClassificationMetrics:
        classes = labels if labels.ndim == 1 else jnp.argmax(labels, axis=-1)
        return ClassificationMetrics.from_batch(loss, predicted_classes(logits), classes.astype(jnp.int32), num_classes, mask)

    return metrics


def regression_metrics() -> MetricsFn:
    """Return ``metrics(predictions, targets, loss, mask) -> RegressionMetrics``."""

    def metrics(predictions: jax.Array, targets: jax.Array, loss: jax.Array, mask: jax.Array | None) -> RegressionMetrics:
        return RegressionMetrics.from_batch(loss, predictions, targets, mask)

    return metrics


def sequence_metrics(ignore_label: int = -1) -> MetricsFn:
    """Return ``metrics(logits [batch, time, classes], labels [batch, time], loss, mask) -> SequenceMetrics``."""

    def metrics(logits: jax.Array, labels: jax.Array, loss: jax.Array, mask: jax.Array | None) -> SequenceMetrics:
        return SequenceMetrics.from_batch(loss, jnp.argmax(logits, axis=-1).astype(labels.dtype), labels, ignore_label, mask)

    return metrics


def segmentation_metrics(num_classes: int) -> MetricsFn:
    """Return ``metrics(logits [batch, h, w, classes], labels [batch, h, w], loss, mask) -> SegmentationMetrics``."""
    if num_classes < 2:
        raise ValueError(f"segmentation needs num_classes >= 2, got {num_classes}")

    def metrics(logits: jax.Array, labels: jax.Array, loss: jax.Array, mask: jax.Array | None) -> SegmentationMetrics:
        return SegmentationMetrics.from_batch(loss, jnp.argmax(logits, axis=-1).astype(jnp.int32),
                                              labels.astype(jnp.int32), num_classes, mask)

    return metrics
