"""What a segmentation or detection run writes after training: test predictions turned into the task's own
scores and pictures (mean average precision for detection; masks side by side for segmentation)."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from jaxdl.boxes import mean_average_precision
from jaxdl.data.base import DatasetSplits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.detection_grid import detect
from jaxdl.report.plots import plot_detections, plot_segmentation
from jaxdl.training.evaluation import predict_in_order
from jaxdl.training.state import TrainState
from jaxdl.training.step import make_predict_step


def predict_all(model: Any, state: TrainState, data: ArrayDataset, batch_size: int) -> np.ndarray:
    """The model's outputs for every example of ``data``, in order, in inference mode."""
    predict = jax.jit(make_predict_step(model))
    return predict_in_order(lambda x: predict(state, x), data, batch_size)


def segmentation_outputs(model: Any, state: TrainState, data: DatasetSplits, workdir: pathlib.Path,
                         batch_size: int, shown: int = 8) -> dict[str, Any]:
    """Write ``segmentation.png`` (the first ``shown`` test images, their true and predicted masks)."""
    test = data.test
    predicted = predict_all(model, state, test.take(np.arange(min(shown, len(test)))), batch_size).argmax(-1)
    plot_segmentation(test.x[:shown], test.y[:shown], predicted, data.class_names, workdir / "segmentation.png")
    return {}


def detection_outputs(model: Any, state: TrainState, data: DatasetSplits, workdir: pathlib.Path,
                      batch_size: int, shown: int = 12) -> dict[str, Any]:
    """Mean average precision at IoU 0.5 and 0.75 on the test canvases, and ``detections.png``."""
    test = data.test
    size = int(test.x.shape[1])
    outputs = predict_all(model, state, test, batch_size)
    boxes, scores, classes, keep = (np.asarray(a) for a in jax.jit(detect, static_argnums=1)(outputs, size))
    detections = [(b[k], s[k], c[k]) for b, s, c, k in zip(boxes, scores, classes, keep)]
    truths = list(zip(test.boxes, test.classes))
    result = {f"map{int(t * 100)}": mean_average_precision(detections, truths, data.num_classes, t)["map"]
              for t in (0.5, 0.75)}
    plot_detections(test.x[:shown], [(b[s > 0.3], s[s > 0.3], c[s > 0.3]) for b, s, c in detections[:shown]],
                    truths[:shown], data.class_names, workdir / "detections.png")
    return result
