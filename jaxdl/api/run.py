"""`Run`: what `jaxdl.fit` returns, a trained model with its state, history and the means to use it."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxdl.api.inference import Inference, inference_of, predict
from jaxdl.api.objective import Objective
from jaxdl.training.state import TrainState


@dataclasses.dataclass
class Run:
    """A finished `jaxdl.fit`: ``model`` (the Linen module jaxdl trained, your module adapted to jaxdl's
    ``train`` flag), ``state`` (the pure `TrainState`: params, BatchNorm statistics, optimizer state, step),
    ``history`` (per-epoch lists keyed as Keras keys them: ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ...), ``summary`` (the loop's summary: best epoch, validation and timing) and ``workdir``."""

    model: nn.Module
    state: TrainState
    history: dict[str, list[float]]
    summary: dict[str, Any]
    objective: Objective
    workdir: str | None = None
    input_spec: Any = None  # of one example: what export needs
    _inference: Any = dataclasses.field(default=None, repr=False, compare=False)
    _eval_step: Any = dataclasses.field(default=None, repr=False, compare=False)

    def inference(self) -> Inference:
        """The trained model for use: an `Inference` (predict, export), made once per state."""
        if self._inference is None or self._inference[0] is not self.state:
            self._inference = (self.state, inference_of(self.model, self.state.inference_variables(), self.input_spec))
        return self._inference[1]

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs for ``x`` in inference mode, as NumPy (see `jaxdl.api.inference.predict`)."""
        return predict(self.inference(), x, batch_size)

    def export(self, path: str) -> Any:
        """Write the inference function as a `jax.export` artifact (see `jaxdl.api.inference.export`)."""
        return self.inference().export(path)

    def evaluate(self, data: Any, batch_size: int = 256) -> dict[str, float]:
        """The loss and metrics on ``data`` (``(x, y)`` or an `ArrayDataset`), every example counted once."""
        from jaxdl.api.data import as_dataset
        from jaxdl.training.evaluation import evaluate, scalar_metrics
        from jaxdl.training.step import make_eval_step

        if self._eval_step is None:  # compiled once per run, not per call
            self._eval_step = jax.jit(make_eval_step(self.model, self.objective.loss, self.objective.metrics))
        return scalar_metrics(evaluate(self.state, self._eval_step, as_dataset(data, "evaluate data"), batch_size))


def keras_history(rows: list[dict[str, Any]], shown: tuple[str, ...] | None) -> dict[str, list[float]]:
    """Per-epoch rows (``train_loss``, ``val_accuracy``, ...) as Keras's ``History.history``: ``loss``,
    ``accuracy``, ``val_loss``, ... each a list over the epochs; ``shown`` limits which metrics (None: all)."""
    history: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("train_"):
                name = key.removeprefix("train_")
            elif key.startswith("val_"):
                name = key
            else:
                continue
            base = name.removeprefix("val_")
            if base == "count" or (shown is not None and base not in shown):
                continue
            history.setdefault(name, []).append(float(value))
    return history
