"""A trained model for use: `Inference` (model, variables, input spec), `load` from a run directory, `summary`
of a model, `export` as a `jax.export` artifact that runs without jaxdl or the model's code."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxdl.data.pipeline import ArrayDataset, num_examples
from jaxdl.training.evaluation import predict_in_order
from jaxdl.training.state import InputSpec, count_params
from jaxdl.transfer.lora import adapted_parts

SPEC_SUFFIX = ".json"  # the input spec beside an exported artifact: ``model.jaxexport`` -> ``model.json``


@dataclasses.dataclass
class Inference:
    """``model`` (a Linen module taking jaxdl's ``train`` flag), its inference ``variables`` (the parameters'
    moving average when the run kept one) and the ``input_spec`` of one example (an `InputSpec`, or a dict of
    them for several inputs)."""

    model: nn.Module
    variables: Any
    input_spec: Any
    _forward: Any = dataclasses.field(default=None, repr=False, compare=False)

    def forward(self) -> Any:
        """The compiled ``(variables, x) -> outputs`` in inference mode (built once)."""
        if self._forward is None:
            self._forward = inference_function(self.model)
        return self._forward

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Outputs for ``x`` in inference mode (see `predict`)."""
        return predict(self, x, batch_size)

    def export(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the inference function as a `jax.export` artifact at ``path`` (see `export`)."""
        return export(self, path)


def inference_of(model: Any, variables: Any, input_spec: Any) -> Inference:
    """An `Inference` of ``model`` with ``variables``: a LoRA-adapted model's adapters merged into its kernels
    first (`jaxdl.transfer.lora.adapted_parts`), so predicting and exporting run the plain model."""
    model, variables = adapted_parts(model, variables)
    return Inference(model, variables, input_spec)


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """Outputs of ``model`` (a `jaxdl.Run`, an `Inference`, or ``(module, variables)``) for inputs ``x`` (an array,
    or a dict of arrays for a multi-input model) in inference mode, as NumPy: every batch padded to
    ``batch_size`` and masked (`jaxdl.training.evaluation.predict_in_order`), so one compiled function serves every
    call and the outputs do not depend on the batch size."""
    if hasattr(model, "inference"):  # a jaxdl.Run
        model = model.inference()
    if isinstance(model, Inference):
        forward, variables = model.forward(), model.variables
    else:
        forward, variables = inference_function(model[0]), model[1]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)
    return predict_in_order(lambda batch: forward(variables, batch), ArrayDataset(x, np.zeros(num_examples(x))), batch_size)


def inference_function(model: nn.Module) -> Any:
    """``jit((variables, x) -> model.apply(variables, x, train=False))``."""
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def load(workdir: str | pathlib.Path) -> Inference:
    """The model a finished ``jaxdl train`` run trained and the variables of its returned checkpoint (the best
    surviving step if that one is damaged), for prediction or export: the experiment is rebuilt from the run's
    ``config.json`` (its data is read for the input shape and the task)."""
    from jaxdl.experiment.evaluate import restore_run

    exp, state = restore_run(workdir)
    return inference_of(exp.model, state.inference_variables(), exp.input_spec)


def _example(spec: Any, batch: Any) -> Any:
    if isinstance(spec, dict):
        return {k: _example(v, batch) for k, v in spec.items()}
    return jax.ShapeDtypeStruct((batch, *spec.shape), np.dtype(spec.dtype))


def export(model: Any, path: str | pathlib.Path) -> pathlib.Path:
    """Serialise ``model``'s inference function of the inputs alone (an `Inference`, a `jaxdl.Run`, or ``(module,
    variables, input_spec)``; the weights are inside the artifact) with a symbolic batch dimension, to ``path``;
    its input spec goes to the same name with ``.json``. Reload without jaxdl::

        exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
        outputs = exported.call(x)   # any batch size
    """
    inference = _as_inference(model)
    batch = jax.export.symbolic_shape("batch")[0]
    module, variables = inference.model, inference.variables

    def forward(x: Any) -> Any:
        return module.apply(variables, x, train=False)

    exported = jax.export.export(jax.jit(forward))(_example(inference.input_spec, batch))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(exported.serialize())
    path.with_suffix(SPEC_SUFFIX).write_text(json.dumps(_spec_json(inference.input_spec), indent=2))
    return path


def _spec_json(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {k: _spec_json(v) for k, v in spec.items()}
    return {"shape": ["batch", *spec.shape], "dtype": spec.dtype}


def _as_inference(model: Any) -> Inference:
    if isinstance(model, Inference):
        return model
    if isinstance(model, tuple) and len(model) == 3:
        return Inference(*model)
    if hasattr(model, "inference"):  # a jaxdl.Run
        return model.inference()
    raise TypeError(f"expected an Inference, a jaxdl.Run or (module, variables, input_spec), got {type(model).__name__}")


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """``table`` (Flax's per-module table: paths, output shapes, parameter counts), ``total_params``, the
    ``flops`` of one forward pass on the example as XLA's cost analysis counts them (None where the backend
    reports none), and ``input_spec``."""

    table: str
    total_params: int
    flops: float | None
    input_spec: Any

    def __str__(self) -> str:
        flops = "n/a" if self.flops is None else f"{self.flops:,.0f}"
        return f"{self.table}\ntotal parameters: {self.total_params:,}\nFLOPs per forward pass (example batch): {flops}"


def summary(model: Any, example: Any, seed: int = 0) -> ModelSummary:
    """Layers, output shapes and parameter counts of ``model`` (any Linen or NNX module, adapted as `jaxdl.fit`
    adapts it) on ``example`` (one batch of inputs), the total, and XLA's FLOP count of the forward pass."""
    from jaxdl.models.adapter import as_model

    module = as_model(model)
    example = jax.tree.map(np.asarray, example)
    variables = jax.jit(lambda x: module.init(jax.random.PRNGKey(seed), x, train=False))(example)
    table = nn.tabulate(module, jax.random.PRNGKey(seed), compute_flops=False,
                        console_kwargs={"no_color": True, "force_terminal": False, "width": 120})(example, train=False)
    compiled = jax.jit(lambda v, x: module.apply(v, x, train=False)).lower(variables, example).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    flops = float(analysis["flops"]) if analysis and "flops" in analysis else None
    spec = {k: InputSpec.of(v) for k, v in example.items()} if isinstance(example, dict) else InputSpec.of(example)
    return ModelSummary(table, count_params(variables["params"]), flops, spec)
