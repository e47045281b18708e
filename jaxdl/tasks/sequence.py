"""Sequence-to-sequence and language models (``sequence_cross_entropy``): a class per time step, padding
steps (``loss.ignore_label``) left out of the loss and the metrics; token accuracy and exact match."""

from __future__ import annotations

import functools

from jaxdl.losses import LossFn, sequence_cross_entropy
from jaxdl.metrics import MetricsFn, sequence_metrics
from jaxdl.tasks.base import Task


class SequencePrediction(Task):
    """Logits ``[batch, time, classes]`` against integer labels ``[batch, time]``."""

    losses = ("sequence_cross_entropy",)
    label_smoothing = True
    class_outputs = True
    integer_labels = True

    @property
    def ignore_label(self) -> int:
        """The label of padding steps."""
        return int(self.config.get("ignore_label", -1))

    @property
    def ignored_label(self) -> int:
        """Padding steps' label, allowed outside the class range."""
        return self.ignore_label

    def loss(self) -> LossFn:
        """Per-sequence mean token cross-entropy over the counted steps."""
        return functools.partial(sequence_cross_entropy, ignore_label=self.ignore_label, label_smoothing=self.smoothing)

    def metrics(self) -> MetricsFn:
        """Loss, token accuracy and exact match over the counted steps."""
        return sequence_metrics(self.ignore_label)
