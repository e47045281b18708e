"""The user-facing API: train your own model on your own data in one call, and use what it learned.

`fit` (fit.py) adapts any Linen or NNX model (models/adapter.py), takes ``(x, y)`` arrays, pytrees or batches
(data.py) and a loss and metrics by name or as functions (objective.py), and trains with jaxdl's own step and
loop; it returns a `Run` (run.py) with the pure state, a Keras-style history and `predict`. inference.py:
`load` a finished ``jaxdl train`` run, `summary` of a model, `export` for serving without jaxdl. transfer.py:
`backbone` (zoo name or run directory) and what ``fit(initial_variables=..., freeze=Freeze(...))`` does with it.
pretrained.py: `pretrained` (a zoo model on raw inputs: preprocessing, class names, MiniLM's ``embed``).
"""

from jaxdl.api.fit import fit
from jaxdl.api.inference import Inference, ModelSummary, export, load, predict, summary
from jaxdl.api.pretrained import PretrainedModel, pretrained
from jaxdl.api.run import Run
from jaxdl.api.transfer import backbone
from jaxdl.transfer.freeze import Freeze

__all__ = ["Freeze", "Inference", "ModelSummary", "PretrainedModel", "Run", "backbone", "export", "fit", "load", "predict",
           "pretrained", "summary"]
