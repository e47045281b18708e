"""jaxdl: functional deep learning in JAX. Models are Flax Linen modules; training is a pure step.

The names below are the everyday API, imported on first use (``import jaxdl`` itself loads nothing heavy):

- your own model and data: `fit` (``jaxdl.fit(model, (x, y), loss=..., epochs=...)``, returning a `Run`),
  `predict`, `summary`, `export`, `load` (a finished run for prediction), `as_model` (your module as jaxdl calls it);
- transfer: `pretrained` (a zoo model on raw photos or texts: ``classify``, ``embed``), `backbone` (a zoo name or a run directory), `Freeze` (which part trains), `TransferClassifier` and
  `DenseHead` (a backbone under a new head), `read_weights_file` and `convert_state_dict` (PyTorch or
  safetensors weights into your Flax model by module-name rules);
- configs and experiments: `default_config`, `load_config`, `build_experiment`, `train_and_evaluate`,
  `evaluate_workdir`;
- pieces for your own loop: `load_dataset`, `create_model`, `get_task`, `make_optimizer`, `create_train_state`,
  `make_train_step`, `make_eval_step`, `make_predict_step`, `make_parallel`, `fit_loop` (the loop kernel's
  `jaxdl.training.loop.fit`), `evaluate`, `TrainState`, `Checkpointer`.

Subpackages, lowest layer first (docs/architecture.md): ``util``, ``nn``, ``models``, ``data``,
``checkpoint``, ``distributed``, ``training``, ``transfer``, ``report``, ``tasks``, ``experiment``, ``tune``,
``api``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "fit": "jaxdl.api",
    "predict": "jaxdl.api",
    "Run": "jaxdl.api",
    "load": "jaxdl.api",
    "export": "jaxdl.api",
    "summary": "jaxdl.api",
    "export_onnx": "jaxdl.api.onnx_export",
    "backbone": "jaxdl.api",
    "pretrained": "jaxdl.api",
    "Freeze": "jaxdl.api",
    "TransferClassifier": "jaxdl.models",
    "DenseHead": "jaxdl.models",
    "as_model": "jaxdl.models.adapter",
    "convert_state_dict": "jaxdl.transfer.state_dict",
    "read_weights_file": "jaxdl.transfer.state_dict",
    "default_config": "jaxdl.config",
    "load_config": "jaxdl.config",
    "build_experiment": "jaxdl.experiment.build",
    "train_and_evaluate": "jaxdl.experiment.run",
    "evaluate_workdir": "jaxdl.experiment.evaluate",
    "load_dataset": "jaxdl.data.datasets",
    "create_model": "jaxdl.models",
    "get_task": "jaxdl.tasks",
    "make_optimizer": "jaxdl.training.optimizers",
    "create_train_state": "jaxdl.training.state",
    "TrainState": "jaxdl.training.state",
    "make_train_step": "jaxdl.training.step",
    "make_eval_step": "jaxdl.training.step",
    "make_predict_step": "jaxdl.training.step",
    "make_parallel": "jaxdl.distributed.parallel",
    "fit_loop": "jaxdl.training.loop:fit",
    "evaluate": "jaxdl.training.evaluation",
    "Checkpointer": "jaxdl.checkpoint",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        module, _, attribute = _PUBLIC[name].partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'jaxdl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
