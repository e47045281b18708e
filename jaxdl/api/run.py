"""`Run`: what `jaxdl.fit` returns, a trained model with its state, history and the means to use it."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxdl.api.objective import Objective
from jaxdl.data.pipeline import map_inputs, num_examples
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
    _forward: Any = dataclasses.field(default=None, repr=False, compare=False)

    def forward(self) -> Any:
        """The compiled ``(variables, x) -> outputs`` in inference mode (built once per run)."""
        if self._forward is None:
            self._forward = inference_function(self.model)
        return self._forward

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs for ``x`` in inference mode, as NumPy (see `predict`)."""
        return predict(self, x, batch_size)

    def inference(self) -> Any:
        """The trained model for use: a `jaxdl.api.inference.Inference` (predict, export)."""
        from jaxdl.api.inference import Inference

        return Inference(self.model, self.state.inference_variables(), self.input_spec)

    def export(self, path: str) -> Any:
        """Write the inference function as a `jax.export` artifact (see `jaxdl.api.inference.export`)."""
        return self.inference().export(path)

    def evaluate(self, data: Any, batch_size: int = 256) -> dict[str, float]:
        """The loss and metrics on ``data`` (``(x, y)`` or an `ArrayDataset`), every example counted once."""
        from jaxdl.api.data import as_dataset
        from jaxdl.training.evaluation import evaluate, scalar_metrics
        from jaxdl.training.step import make_eval_step

        step = jax.jit(make_eval_step(self.model, self.objective.loss, self.objective.metrics))
        return scalar_metrics(evaluate(self.state, step, as_dataset(data, "evaluate data"), batch_size))


def predict(run: Run | tuple[nn.Module, Any], x: Any, batch_size: int = 256) -> np.ndarray:
    """Outputs of ``run``'s model (or of ``(model, variables)``) for inputs ``x`` (an array, or a dict of arrays for
    a multi-input model) in inference mode, computed in batches of ``batch_size`` by one compiled function (the
    last batch padded, its padding dropped), returned as NumPy. The same inputs always give the same outputs."""
    if isinstance(run, Run):
        forward, variables = run.forward(), run.state.inference_variables()
    else:
        forward, variables = inference_function(run[0]), run[1]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)
    n = num_examples(x)
    size = min(batch_size, n)
    outputs = []
    for start in range(0, n, size):
        batch = map_inputs(lambda a: a[start:start + size], x)
        real = num_examples(batch)
        if real < size:  # one shape for every call: no second compile for the last batch
            batch = map_inputs(lambda a: np.concatenate([a, np.repeat(a[-1:], size - real, axis=0)]), batch)
        out = jax.device_get(forward(variables, batch))
        outputs.append(jax.tree.map(lambda a: np.asarray(a)[:real], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def inference_function(model: nn.Module) -> Any:
    """``jit((variables, x) -> model.apply(variables, x, train=False))``."""
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


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
