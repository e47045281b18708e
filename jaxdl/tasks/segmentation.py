"""Semantic segmentation (``dice``, ``cross_entropy_dice``): a class per pixel, pixel accuracy and IoU while
training, and after training a figure of test images beside their true and predicted masks."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

from jaxdl.losses import LossFn, cross_entropy_dice, dice_loss
from jaxdl.metrics import MetricsFn, segmentation_metrics
from jaxdl.report.dense_outputs import segmentation_outputs
from jaxdl.tasks.base import Task
from jaxdl.training.state import TrainState


class Segmentation(Task):
    """Per-pixel class logits ``[batch, h, w, classes]`` against integer masks ``[batch, h, w]``."""

    losses = ("dice", "cross_entropy_dice")
    class_outputs = True
    integer_labels = True

    def loss(self) -> LossFn:
        """Soft Dice, or per-pixel cross-entropy plus Dice (the usual U-Net objective)."""
        return dice_loss if self.name == "dice" else cross_entropy_dice

    def metrics(self) -> MetricsFn:
        """Loss, pixel accuracy, per-class and mean IoU."""
        return segmentation_metrics(self.num_classes)

    def write_outputs(self, model: Any, state: TrainState, data: Any, workdir: pathlib.Path, batch_size: int,
                      test_time: Callable | None, hooks: list[Any]) -> dict[str, Any]:
        """``segmentation.png``: the first test images, their true and predicted masks."""
        segmentation_outputs(model, state, data, workdir, batch_size)
        return {}
