"""Transfer learning in code: a backbone by name or run directory, the variables a fit starts from, and the
optimizer and model a `Freeze` implies.

    backbone = jd.backbone("mobilenet-v2")                      # or jd.backbone("runs/stage1")
    model = backbone.with_head(DenseHead((256,), num_outputs=5, dropout_rate=0.5), input_size=224)
    stage1 = jd.fit(model, data, ..., initial_variables=backbone, freeze=jd.Freeze())
    stage2 = jd.fit(model, data, ..., initial_variables=stage1, learning_rate=1e-4,
                    freeze=jd.Freeze("train_top", top_blocks=2, backbone_lr_scale=0.1))
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxdl.transfer.backbone import Backbone, load_backbone, restore_backbone, restore_head
from jaxdl.transfer.freeze import BACKBONE, Freeze, transfer_optimizer


def backbone(source: str | pathlib.Path, cache_dir: str | None = None) -> Backbone:
    """A `Backbone` (features module, pretrained variables) from the zoo by name (``"mobilenet-v2"``,
    ``"efficientnet-lite0"``, ``"minilm-l6"``) or from the directory of a finished run, a transfer run included
    (its backbone, and its head for a new head of the same design)."""
    from jaxdl.transfer.zoo import ZOO

    if isinstance(source, str) and source in ZOO:
        return load_backbone(pretrained=source, cache=cache_dir)
    if not pathlib.Path(source).is_dir():
        raise ValueError(f"backbone {str(source)!r} is neither a pretrained model ({sorted(ZOO)}) nor a run directory")
    return load_backbone(workdir=source)


def starting_variables(reference: dict[str, Any], initial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variables a fit starts from, shaped like ``reference`` (the model's variables, as arrays or as
    `jax.ShapeDtypeStruct` leaves: those that stay abstract are the ones to initialise), and
    what was restored. ``initial``: a `Backbone` (into the ``backbone`` subtree; its head where it fits), a
    `jaxdl.Run` or a `TrainState` (all its variables), or a dict of variables, whole or partial (e.g.
    ``{"params": {"encoder": ...}}``): every given array must land on a variable of the same path and shape."""
    if isinstance(initial, Backbone):
        variables, dropped = restore_backbone(reference, initial.variables)
        variables, head = restore_head(variables, initial.head_variables)
        return variables, {"backbone": initial.source, "dropped_from_source": dropped, "head_restored": head}
    if hasattr(initial, "state"):  # a Run
        initial = initial.state
    if hasattr(initial, "variables") and callable(initial.variables):  # a TrainState
        initial = initial.variables()
    if not isinstance(initial, dict):
        raise TypeError(f"initial_variables must be a Backbone, a Run, a TrainState or a dict of variables, "
                        f"got {type(initial).__name__}")
    return overlay(reference, initial), {"restored": sorted(initial)}


def overlay(reference: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``reference`` with every leaf of ``given`` put at its path, cast to the reference's dtype; a given path
    the model does not have, or a shape that differs, is an error naming them (no partial restore)."""
    model = flatten_dict(jax.tree.map(lambda a: a, reference))
    source = flatten_dict(dict(given))
    unknown = sorted("/".join(p) for p in set(source) - set(model))
    clashes = [f"{'/'.join(p)}: given {np.shape(source[p])}, model {np.shape(model[p])}"
               for p in sorted(set(source) & set(model)) if np.shape(source[p]) != np.shape(model[p])]
    if unknown or clashes:
        raise ValueError("initial_variables do not fit the model: " + "; ".join(filter(None, (
            f"paths the model does not have {unknown[:10]} (it has {sorted('/'.join(p) for p in model)[:10]} ...)"
            if unknown else "", f"shape clashes {clashes[:10]}" if clashes else ""))))
    model.update({p: np.asarray(source[p], np.dtype(model[p].dtype)) for p in source})
    return unflatten_dict(model)


def frozen_optimizer(make_tx: Callable[[float], optax.GradientTransformation], learning_rate: float, freeze: Freeze,
                     params: Any) -> optax.GradientTransformation:
    """The optimizer of ``freeze``: ``make_tx(learning_rate)`` for the head, ``make_tx(learning_rate *
    backbone_lr_scale)`` for the backbone's trained part, exact zeros for its frozen part."""
    if BACKBONE not in params:
        raise ValueError(f"freeze needs a model with a '{BACKBONE}' submodule (e.g. jd.backbone(...).with_head(...)); "
                         f"this one has {sorted(params)}")
    return transfer_optimizer(make_tx, learning_rate, freeze.backbone_lr_scale, freeze.labels(params))
