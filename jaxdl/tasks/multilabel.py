"""Multi-label classification (loss name ``multilabel``): any number of ``k`` labels per example, one sigmoid
per label. Labels are 0/1 rows ``[batch, k]``; the loss is the mean over labels of their binary
cross-entropies; the metrics are per-label accuracy (``accuracy``), the share of examples with every label
right (``exact_match``) and micro-averaged precision, recall and F1 over all label decisions."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jaxdl.losses import LossFn, binary_cross_entropy
from jaxdl.metrics import MetricsFn, Sums, as_mask, loss_and_count
from jaxdl.tasks.base import Task


@flax.struct.dataclass
class MultiLabelMetrics(Sums):
    """Sums over examples: ``loss_sum``, ``count``, label decisions right (``correct``), examples with all labels
    right (``exact``), and true positives, predicted positives and actual positives per label (``[k]`` each)."""

    loss_sum: jax.Array
    count: jax.Array
    correct: jax.Array
    exact: jax.Array
    true_positives: jax.Array
    predicted_positives: jax.Array
    actual_positives: jax.Array

    def compute(self) -> dict[str, Any]:
        """Mean loss, per-label ``accuracy``, ``exact_match``, micro ``precision``/``recall``/``f1`` (0 where undefined)."""
        host = jax.device_get(self)
        n = max(int(host.count), 1)
        labels = int(host.true_positives.shape[0])
        tp, predicted, actual = (float(host.true_positives.sum()), float(host.predicted_positives.sum()),
                                 float(host.actual_positives.sum()))
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"loss": float(host.loss_sum) / n, "accuracy": int(host.correct) / max(n * labels, 1),
                "exact_match": int(host.exact) / n, "precision": precision, "recall": recall, "f1": f1,
                "count": int(host.count)}


def multilabel_metrics(threshold: float = 0.0) -> MetricsFn:
    """``metrics(logits [batch, k], labels [batch, k], loss, mask) -> MultiLabelMetrics``; a label is predicted
    present where its logit exceeds ``threshold`` (0: probability above one half)."""

    def metrics(logits: jax.Array, labels: jax.Array, loss: jax.Array, mask: jax.Array | None) -> MultiLabelMetrics:
        m = as_mask(mask, loss.shape[0])[:, None]
        predicted, actual = logits > threshold, labels > 0.5
        right = (predicted == actual) & m
        return MultiLabelMetrics(
            **loss_and_count(loss, m[:, 0]),
            correct=jnp.sum(right).astype(jnp.int32),
            exact=jnp.sum(jnp.all(predicted == actual, axis=-1) & m[:, 0]).astype(jnp.int32),
            true_positives=jnp.sum(predicted & actual & m, axis=0).astype(jnp.int32),
            predicted_positives=jnp.sum(predicted & m, axis=0).astype(jnp.int32),
            actual_positives=jnp.sum(actual & m, axis=0).astype(jnp.int32))

    return metrics


def multilabel_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean over the ``k`` labels of each label's binary cross-entropy from its logit: ``[batch, k] -> [batch]``."""
    if logits.ndim != 2 or labels.shape != logits.shape:
        raise ValueError(f"multilabel: expected logits [batch, labels] and 0/1 labels of the same shape, got "
                         f"{logits.shape} and {labels.shape}")
    return binary_cross_entropy(logits, labels)


class MultiLabelClassification(Task):
    """One independent yes/no decision per label; the data's ``num_classes`` is the number of labels."""

    losses = ("multilabel",)
    test_time_combine = "sigmoid"
    class_outputs = True

    def loss(self) -> LossFn:
        """`multilabel_loss`."""
        return multilabel_loss

    def metrics(self) -> MetricsFn:
        """`multilabel_metrics` at probability one half."""
        return multilabel_metrics()
