"""Backbones for transfer: from the pretrained zoo or from an earlier jaxdl run, and their restore into a new model.

`load_backbone` returns the backbone as a features module (its old output layer removed) together with
its pretrained variables. `restore_backbone` puts those variables into the ``backbone`` subtree of a
freshly initialised `TransferClassifier`: every backbone variable of the new model must be filled with an
array of its exact shape (a clash names the path and both shapes); source variables the new model has no
place for (the old classifier) are returned by name, never dropped silently.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import flax.linen as nn
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxdl import checkpoint
from jaxdl.models.bert import BertEncoder
from jaxdl.models.mobilenet import MobileNet
from jaxdl.transfer.freeze import BACKBONE


@dataclasses.dataclass
class Backbone:
    """A features ``module``, its pretrained ``variables`` (``{"params", ["batch_stats"]}``), the kind of
    ``inputs`` it reads ("image" or "tokens") and where it came from."""

    module: nn.Module
    variables: dict[str, Any]
    inputs: str
    source: str


def _zoo_backbone(name: str, cache: str | None, frozen_blocks: int) -> Backbone:
    from jaxdl.transfer.zoo import load_pretrained

    model, variables = load_pretrained(name, cache)
    if isinstance(model, MobileNet):
        return Backbone(model.clone(num_outputs=None, frozen_blocks=frozen_blocks), dict(variables), "image", name)
    if isinstance(model, BertEncoder):
        return Backbone(model, dict(variables), "tokens", name)
    raise ValueError(f"pretrained {name!r} cannot serve as a backbone")  # pragma: no cover - every zoo entry is one


def load_run_model(workdir: str | pathlib.Path, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The model a finished ``jaxdl train`` run trained, rebuilt from its ``config.json`` (with ``overrides`` of
    its hyperparameters), and the variables of its returned checkpoint (params, or the weights' moving average
    when the run kept one, and BatchNorm statistics)."""
    from jaxdl.config import config_from_json, model_arguments
    from jaxdl.models.registry import create_model, model_constructor, model_fields

    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} has no config.json: it must be the --workdir of a finished `jaxdl train` run")
    config = config_from_json((workdir / "config.json").read_text())
    unknown = sorted(set(overrides) - set(model_fields(model_constructor(config.model.name))))
    if unknown:
        raise ValueError(f"the run's model {config.model.name!r} has no {unknown} to set")
    module = create_model(config.model.name, **{**model_arguments(config), **overrides})
    step = checkpoint.returned_step(workdir)
    with checkpoint.Checkpointer(workdir / "checkpoints") as checkpointer:
        # A run that kept a moving average of its weights was evaluated with it: the same model goes on.
        variables = checkpointer.restore_subtree(lambda tree: {k: tree[k] for k in ("params", "batch_stats", "average")
                                                               if k in tree and tree[k]}, step, fallback=True)
    average = variables.pop("average", None)
    return module, variables if average is None else dict(variables, params=average)


def _run_backbone(workdir: pathlib.Path) -> Backbone:
    """The model a jaxdl run trained (its returned checkpoint), with ``num_outputs=None``: its output layer gone."""
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} has no config.json: transfer.workdir must be the --workdir of a finished "
                                "`jaxdl train` run; train that first (for digits_transfer: `jaxdl train experiments/digits_pretrain.py "
                                "--workdir runs/digits_pretrain`)")
    module, variables = load_run_model(workdir, num_outputs=None)
    return Backbone(module, variables, "image", str(workdir))


def load_backbone(pretrained: str | None = None, workdir: str | pathlib.Path | None = None, cache: str | None = None,
                  frozen_blocks: int = 0) -> Backbone:
    """The backbone named by a zoo name (``pretrained``) or by the ``workdir`` of an earlier jaxdl run."""
    if bool(pretrained) == bool(workdir):
        raise ValueError("transfer needs exactly one of transfer.pretrained (a zoo name) and transfer.workdir "
                         f"(a jaxdl run), got pretrained={pretrained!r}, workdir={workdir!r}")
    return _zoo_backbone(pretrained, cache, frozen_blocks) if pretrained else _run_backbone(pathlib.Path(workdir))


def restore_backbone(variables: dict[str, Any], backbone: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``variables`` (a `TransferClassifier`'s) with their ``backbone`` subtrees replaced by ``backbone``'s
    arrays; returns them and the source paths that had no place in the model (e.g. an old classifier)."""
    out, dropped = {}, []
    for collection, tree in variables.items():
        flat = flatten_dict(dict(tree))
        wanted = {path[1:]: leaf for path, leaf in flat.items() if path[0] == BACKBONE}
        source = flatten_dict(dict(backbone.get(collection, {})))
        missing = sorted("/".join(p) for p in set(wanted) - set(source))
        clashes = [f"{collection}/backbone/{'/'.join(p)}: pretrained {np.shape(source[p])} vs model {np.shape(wanted[p])}"
                   for p in sorted(set(wanted) & set(source)) if np.shape(source[p]) != np.shape(wanted[p])]
        if missing or clashes:
            raise ValueError("the pretrained backbone does not fit the model: "
                             + "; ".join(filter(None, (f"missing {missing[:10]}" if missing else "",
                                                       f"shape clashes {clashes[:10]}" if clashes else ""))))
        dropped += [f"{collection}/{'/'.join(p)}" for p in sorted(set(source) - set(wanted))]
        flat.update({(BACKBONE,) + p: np.asarray(source[p], wanted[p].dtype) for p in wanted})
        out[collection] = unflatten_dict(flat)
    return out, dropped
