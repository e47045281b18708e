"""Backbones for transfer: from the pretrained zoo or from an earlier jaxdl run, and their restore into a new model.

`load_backbone` returns the backbone as a features module (its old output layer removed) together with
its pretrained variables. An earlier transfer run is a backbone too: its own backbone, with its head's
variables offered to the new head (`Backbone.head_variables`), so a second stage continues the first.
`restore_backbone` puts those variables into the ``backbone`` subtree of a freshly initialised
`TransferClassifier`: every backbone variable of the new model must be filled with an array of its exact
shape (a clash names the path and both shapes); source variables the new model has no place for (the old
classifier) are returned by name, never dropped silently. The head is restored only where every one of its
variables fits (same paths and shapes); otherwise it starts fresh, and the notes say which.
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
from jaxdl.models.transfer import TransferClassifier
from jaxdl.transfer.freeze import BACKBONE, Freeze, frozen_below
from jaxdl.transfer.lora import LowRankAdapted, merge_adapters

HEAD = "head"


@dataclasses.dataclass
class Backbone:
    """A features ``module``, its pretrained ``variables`` (``{"params", ["batch_stats"]}``), the kind of
    ``inputs`` it reads ("image" or "tokens") and where it came from."""

    module: nn.Module
    variables: dict[str, Any]
    inputs: str
    source: str
    head_variables: dict[str, Any] | None = None  # an earlier transfer run's head, for a head of the same shape

    def with_head(self, head: nn.Module | None = None, num_outputs: int = 10, **options: Any) -> TransferClassifier:
        """A `TransferClassifier` of this backbone under ``head`` (any Linen module; None: one Dense layer of
        ``num_outputs``); ``options`` are its other fields (``input_size``, ``head_dropout``, ``train_backbone``)."""
        return TransferClassifier(self.module, num_outputs=num_outputs, head=head, inputs=self.inputs, **options)


def _zoo_module(name: str, frozen_blocks: int) -> tuple[nn.Module, str]:
    """The zoo entry's features module (its classifier removed) and the kind of inputs it reads."""
    from jaxdl.transfer.zoo import entry

    model = entry(name).build()
    if isinstance(model, MobileNet):
        return model.clone(num_outputs=None, frozen_blocks=frozen_blocks), "image"
    if isinstance(model, BertEncoder):
        return model, "tokens"
    raise ValueError(f"pretrained {name!r} cannot serve as a backbone")  # pragma: no cover - every zoo entry is one


def _zoo_backbone(name: str, cache: str | None, frozen_blocks: int) -> Backbone:
    from jaxdl.transfer.zoo import load_pretrained

    module, inputs = _zoo_module(name, frozen_blocks)
    return Backbone(module, dict(load_pretrained(name, cache)[1]), inputs, name)


def _read_run_config(workdir: pathlib.Path) -> Any:
    from jaxdl.config import config_from_json

    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} has no config.json: it must be the --workdir of a finished `jaxdl train` run")
    return config_from_json((workdir / "config.json").read_text())


def build_transfer_model(config: Any, model_kwargs: dict[str, Any], frozen_blocks: int = 0) -> TransferClassifier:
    """A transfer config's `TransferClassifier` (weights not read): the backbone module its ``transfer``
    section names, rebuilt without weights (an earlier run's from that run's config, recursively), and
    ``model.head`` (a registered model's name and fields, e.g. ``{"name": "dense_head", "hidden_sizes":
    (256,)}``) built with the model's ``num_outputs``; ``model_kwargs`` are the model's other fields."""
    from jaxdl.models.registry import create_model

    transfer = config.transfer
    if bool(transfer.pretrained) == bool(transfer.workdir):
        raise ValueError("transfer needs exactly one of transfer.pretrained (a zoo name) and transfer.workdir "
                         f"(a jaxdl run), got pretrained={transfer.pretrained!r}, workdir={transfer.workdir!r}")
    if transfer.pretrained:
        module, inputs = _zoo_module(transfer.pretrained, frozen_blocks)
    else:
        source = _run_module(pathlib.Path(transfer.workdir), num_outputs=None)
        module, inputs = (source.backbone, source.inputs) if isinstance(source, TransferClassifier) else (source, "image")
        if frozen_blocks and "frozen_blocks" in getattr(module, "__dataclass_fields__", {}):
            module = module.clone(frozen_blocks=frozen_blocks)
    kwargs = dict(model_kwargs)
    head = kwargs.pop("head", None)
    if head:
        head = dict(head)
        if "name" not in head:
            raise ValueError(f"model.head must name a registered model, e.g. dict(name='dense_head', hidden_sizes=(256,)), "
                             f"got {head}")
        head = create_model(head.pop("name"), **{"num_outputs": kwargs.get("num_outputs", 10), **head})
    return TransferClassifier(module, head=head or None, **{"inputs": inputs, **kwargs})


def _run_module(workdir: pathlib.Path, **overrides: Any) -> nn.Module:
    """The module a finished run trained, rebuilt from its config (a transfer run's with its backbone, whose
    classifier ``overrides`` cannot remove: the caller takes its ``backbone``)."""
    from jaxdl.config import model_arguments
    from jaxdl.models.registry import create_model, model_constructor, model_fields

    config = _read_run_config(workdir)
    if config.model.name == "transfer":
        return build_transfer_model(config, model_arguments(config))
    unknown = sorted(set(overrides) - set(model_fields(model_constructor(config.model.name))))
    if unknown:
        raise ValueError(f"the run's model {config.model.name!r} has no {unknown} to set")
    return create_model(config.model.name, **{**model_arguments(config), **overrides})


def load_run_model(workdir: str | pathlib.Path, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The model a finished ``jaxdl train`` run trained, rebuilt from its ``config.json`` (with ``overrides`` of
    its hyperparameters), and the variables of its returned checkpoint (params, or the weights' moving average
    when the run kept one, and BatchNorm statistics); a LoRA run's adapters merged into its kernels."""
    workdir = pathlib.Path(workdir)
    module = _run_module(workdir, **overrides)
    transfer = _read_run_config(workdir).get("transfer", {})
    step = checkpoint.returned_step(workdir)
    with checkpoint.Checkpointer(workdir / "checkpoints") as checkpointer:
        # A run that kept a moving average of its weights was evaluated with it: the same model goes on.
        variables = checkpointer.restore_subtree(lambda tree: {k: tree[k] for k in ("params", "batch_stats", "average")
                                                               if k in tree and tree[k]}, step, fallback=True)
    average = variables.pop("average", None)
    variables = variables if average is None else dict(variables, params=average)
    if transfer.get("mode") == "lora":
        variables = dict(variables, params=merge_adapters(variables["params"], transfer["lora_alpha"] / transfer["lora_rank"]))
    return module, variables


def _run_backbone(workdir: pathlib.Path) -> Backbone:
    """The model a jaxdl run trained (its returned checkpoint), with ``num_outputs=None``: its output layer gone;
    of a transfer run, its backbone, with its head's variables for a new head of the same shape."""
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} has no config.json: transfer.workdir must be the --workdir of a finished "
                                "`jaxdl train` run; train that first (for digits_transfer: `jaxdl train experiments/digits_pretrain.py "
                                "--workdir runs/digits_pretrain`)")
    module, variables = load_run_model(workdir, num_outputs=None)
    if isinstance(module, TransferClassifier):
        def part(name: str) -> dict[str, Any]:
            return {c: tree[name] for c, tree in variables.items() if name in tree}
        return Backbone(module.backbone, part(BACKBONE), module.inputs, str(workdir), head_variables=part(HEAD))
    return Backbone(module, variables, "image", str(workdir))


def load_backbone(pretrained: str | None = None, workdir: str | pathlib.Path | None = None, cache: str | None = None,
                  frozen_blocks: int = 0) -> Backbone:
    """The backbone named by a zoo name (``pretrained``) or by the ``workdir`` of an earlier jaxdl run
    (``frozen_blocks``: the leading blocks a zoo MobileNet runs in inference mode)."""
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


def restore_head(variables: dict[str, Any], head: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """``variables`` with their ``head`` subtrees replaced by ``head``'s arrays when every head variable of the
    model has a source of the same path and shape (an earlier stage's head of the same design), and whether it
    was; a head that differs in anything is left as initialised, whole."""
    if not head:
        return variables, False
    model = {c: flatten_dict(dict(tree[HEAD])) for c, tree in variables.items() if HEAD in tree}
    source = {c: flatten_dict(dict(head.get(c, {}))) for c in model}
    fits = set(model) == {c for c, tree in head.items() if tree} and all(
        set(model[c]) == set(source[c]) and all(np.shape(source[c][p]) == np.shape(model[c][p]) for p in model[c])
        for c in model)
    if not fits:
        return variables, False
    out = {c: dict(tree) for c, tree in variables.items()}
    for c in model:
        out[c][HEAD] = unflatten_dict({p: np.asarray(source[c][p], model[c][p].dtype) for p in model[c]})
    return out, True


def frozen_model(model: nn.Module, freeze: Freeze, params: Any, batch_stats: str = "frozen") -> nn.Module:
    """``model`` as ``freeze`` trains it: a `TransferClassifier`'s backbone in inference mode (BatchNorm keeps
    its pretrained statistics, dropout off) unless ``batch_stats="train"`` and some of it trains, and a
    backbone with ``frozen_blocks`` told how many leading blocks are frozen; for ``lora``, the model wrapped in
    `LowRankAdapted`. Other models come back as they are."""
    if batch_stats not in ("frozen", "train"):
        raise ValueError(f"batch_stats must be 'frozen' or 'train', got {batch_stats!r}")
    if isinstance(model, TransferClassifier):
        frozen = frozen_below(params, freeze.mode, freeze.freeze_blocks, freeze.top_blocks)
        train_backbone = freeze.mode == "scratch" or (freeze.mode != "feature_extraction" and batch_stats == "train")
        module = model.backbone
        if "frozen_blocks" in getattr(module, "__dataclass_fields__", {}):
            module = module.clone(frozen_blocks=frozen)
        model = model.clone(backbone=module, train_backbone=train_backbone)
    if freeze.mode == "lora":
        return LowRankAdapted(model, freeze.lora_rank, freeze.lora_alpha, freeze.lora_targets)
    return model
