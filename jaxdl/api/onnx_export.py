"""`export_onnx`: the inference function as an ONNX model (with ``jax2onnx``), checked with ONNX Runtime.

The graph is the model's inference pass with the weights inside and a symbolic batch dimension, as
`jaxdl.export` writes it for ``jax.export``; ONNX suits serving stacks that do not run JAX (ONNX Runtime,
TensorRT, browsers). Where ``onnxruntime`` is installed the written model is run on a random batch and
compared with `jaxdl.predict`; a difference beyond the tolerance is an error, not a file silently wrong.
Install: ``pip install 'jaxdl[onnx]' && pip install --no-deps jax2onnx==0.17.1`` (jax2onnx's own metadata
pins an older Orbax, which it does not need for exporting; requirements-nodeps.txt lists it).
"""

from __future__ import annotations

import importlib.util
import logging
import pathlib
from typing import Any

import numpy as np

from jaxdl.api.inference import _as_inference, predict


def _to_onnx() -> Any:
    if importlib.util.find_spec("jax2onnx") is None:
        raise ModuleNotFoundError("ONNX export needs jax2onnx: pip install 'jaxdl[onnx]' && "
                                  "pip install --no-deps jax2onnx==0.17.1")
    # jax2onnx logs a traceback for each optional example plugin (Equinox, dm-pix) it cannot import.
    quiet = logging.getLogger("jax2onnx.plugins.plugin_system")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        from jax2onnx import to_onnx
    finally:
        quiet.setLevel(level)
    return to_onnx


def export_onnx(model: Any, path: str | pathlib.Path, check: bool = True, atol: float = 1e-4) -> pathlib.Path:
    """Write ``model`` (a `jaxdl.Run`, an `Inference` or ``(module, variables, input_spec)``) as an ONNX file at
    ``path``, input ``x`` of shape ``[batch, ...]``; with ``check`` (and onnxruntime installed) compare its
    outputs with `predict`'s on a random batch of 3 within ``atol`` (relative to the outputs' scale)."""
    inference = _as_inference(model)
    spec = inference.input_spec
    if isinstance(spec, dict):
        raise ValueError(f"ONNX export takes a model of one input array; this one takes {sorted(spec)}: "
                         "use jaxdl.export (jax.export) for several inputs")
    module, variables = inference.model, inference.variables
    proto = _to_onnx()(lambda x: module.apply(variables, x, train=False), [("batch", *spec.shape)],
                       model_name=type(module).__name__, input_names=["x"])
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    if check and importlib.util.find_spec("onnxruntime") is not None:
        check_onnx(path, inference, atol)
    return path


def check_onnx(path: str | pathlib.Path, model: Any, atol: float = 1e-4) -> float:
    """Run the ONNX file at ``path`` with ONNX Runtime on a random batch of 3 and return its largest difference
    from `predict` of ``model``, raising ``ValueError`` when it exceeds ``atol`` times the outputs' scale."""
    import onnxruntime

    inference = _as_inference(model)
    spec = inference.input_spec
    rng = np.random.default_rng(0)
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        x = rng.integers(0, 2, (3, *spec.shape)).astype(spec.dtype)
    else:
        x = rng.uniform(0, 1, (3, *spec.shape)).astype(spec.dtype)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = predict(inference, x)
    difference = float(np.max(np.abs(ours - expected)))
    if difference > atol * max(1.0, float(np.max(np.abs(expected)))):
        raise ValueError(f"the ONNX model at {path} differs from the JAX model by {difference:.3g} on a random batch "
                         f"(tolerance {atol:g}); an operation converts differently: report it to jax2onnx")
    return difference
