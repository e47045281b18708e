"""Classification: one class per example from softmax logits (``softmax_cross_entropy``) or a yes/no answer
from one logit (``binary_cross_entropy``); accuracy, per-class scores and a confusion matrix, and after
training the test predictions that ``jaxdl report`` turns into a classification report."""

from __future__ import annotations

import functools
import pathlib
from typing import Any, Callable

import jax
import numpy as np

from jaxdl.losses import LossFn, binary_cross_entropy, softmax_cross_entropy
from jaxdl.metrics import MetricsFn, classification_metrics, predicted_classes
from jaxdl.report.classification import save_predictions
from jaxdl.tasks.base import Task
from jaxdl.training.evaluation import predict_in_order
from jaxdl.training.state import TrainState
from jaxdl.training.step import make_predict_step


def predict_classes(model: Any, state: TrainState, data: Any, batch_size: int, test_time: Callable | None = None) -> np.ndarray:
    """The predicted class of every example of ``data`` (in order), from ``state`` in inference mode (averaged
    over ``test_time``'s views when given)."""
    step = make_predict_step(model, test_time)
    predict = jax.jit(lambda s, x: predicted_classes(step(s, x)))  # state an argument, not a constant
    return predict_in_order(lambda x: predict(state, x), data, batch_size)


class Classification(Task):
    """Softmax cross-entropy over ``num_classes`` logits, integer or one-hot labels, optional label smoothing."""

    losses = ("softmax_cross_entropy",)
    test_time_combine = "probabilities"
    label_smoothing = True
    class_outputs = True
    integer_labels = True

    def loss(self) -> LossFn:
        """`softmax_cross_entropy`, smoothed by ``loss.label_smoothing``."""
        return functools.partial(softmax_cross_entropy, label_smoothing=self.smoothing) if self.smoothing else softmax_cross_entropy

    def metrics(self) -> MetricsFn:
        """Loss, accuracy, confusion matrix over the data's classes."""
        return classification_metrics(self.num_classes)

    def write_outputs(self, model: Any, state: TrainState, data: Any, workdir: pathlib.Path, batch_size: int,
                      test_time: Callable | None, hooks: list[Any]) -> dict[str, Any]:
        """``predictions.npz`` of the test split (true and predicted classes), read by the report."""
        if np.ndim(data.test.y) == 1:
            y_pred = predict_classes(model, state, data.test, batch_size, test_time)
            save_predictions(workdir, data.test.y, y_pred, data.class_names, data.test.x)
        return {}


class BinaryClassification(Classification):
    """Binary cross-entropy from one logit per example (or ``k`` independent logits against 0/1 labels)."""

    losses = ("binary_cross_entropy",)
    test_time_combine = "sigmoid"
    label_smoothing = False
    class_outputs = False

    def loss(self) -> LossFn:
        """`binary_cross_entropy` from logits."""
        return binary_cross_entropy

    def check_labels(self, labels: Any, split: str) -> None:
        """Integer labels as every classifier's; float labels (soft targets, 0.0/1.0) must lie in [0, 1]:
        a target of 2.0 has no probability meaning and drives the logit to infinity without an error."""
        labels = np.asarray(labels)
        if np.issubdtype(labels.dtype, np.floating) and labels.size:
            bad = (labels < 0) | (labels > 1) | ~np.isfinite(labels)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                where = index[0] if len(index) == 1 else index
                raise ValueError(f"{split} label {float(labels[index])} at index {where} is outside [0, 1]: binary "
                                 "cross-entropy targets are probabilities (0 or 1, or soft targets between)")
            return
        super().check_labels(labels, split)
