"""Any Linen module, or a Flax NNX module, as a jaxdl model: ``apply(variables, x, train=...)``.

jaxdl's steps call ``model.apply(variables, x, train=True/False, rngs={"dropout": key}, mutable=["batch_stats"])``.
`as_model` adapts what users bring to that call without touching their parameters' names:

- a Linen module whose ``__call__`` takes ``train`` is used as it is;
- one that takes ``training``, ``is_training`` (same sense), ``deterministic`` or ``use_running_average``
  (the opposite sense), or no flag at all, is wrapped by `TrainFlag`, which shares its scope, so the parameter
  tree is the module's own (``model.init`` of the original gives the same paths);
- a Linen module that keeps state in collections of its own (a step counter in ``"counts"``, running
  statistics in ``"stats"``) is wrapped by `OwnCollections` (`with_own_collections`, given an example input):
  those collections travel as ``batch_stats[name]`` and are updated by every training step;
- an NNX module is wrapped by `NNXModel`: its parameters become the ``params`` collection, its other state
  (BatchNorm statistics) ``batch_stats``; ``train`` switches it with ``module.train()``/``module.eval()``, and
  its dropout streams are reseeded from the step's key, so a step is a pure function of state and batch.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

# Flag names and whether True means training.
TRAIN_FLAGS = {"train": True, "training": True, "is_training": True, "deterministic": False,
               "use_running_average": False}


def training_flag(module: nn.Module) -> tuple[str, bool] | None:
    """``(name, means_training)`` of the training flag ``module.__call__`` takes (the first of `TRAIN_FLAGS`
    its signature names), or None when it takes none."""
    try:
        parameters = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no flag to find
        return None
    for name, means_training in TRAIN_FLAGS.items():
        if name in parameters:
            return name, means_training
    return None


def call_with_train(module: nn.Module, x: Any, train: bool) -> Any:
    """``module(x)`` with jaxdl's ``train`` passed as the module's own training flag (or not at all)."""
    flag = training_flag(module)
    if flag is None:
        return module(x)
    name, means_training = flag
    return module(x, **{name: train if means_training else not train})


class TrainFlag(nn.Module):
    """``module`` called with its own training flag ``flag`` (or none) from jaxdl's ``train``; parameters keep
    the module's own paths (the wrapper shares its scope)."""

    module: nn.Module
    flag: str | None = None
    means_training: bool = True

    def setup(self) -> None:
        nn.share_scope(self, self.module)

    def __call__(self, x: Any, train: bool = False) -> Any:
        if self.flag is None:
            return self.module(x)
        return self.module(x, **{self.flag: train if self.means_training else not train})


class NNXModel(nn.Module):
    """A Flax NNX module as a Linen model, built from ``nnx.split(module, nnx.Param, nnx.RngState, ...)``.

    Parameters (`nnx.Param`) live in ``params`` and other variables (e.g. `nnx.BatchStat`) in ``batch_stats``,
    both as plain nested dicts (so optimizers, masks by path and checkpoints see ordinary trees); random
    streams are not state: each training call reseeds the module's ``dropout`` stream from the ``dropout`` key
    jaxdl's step provides."""

    graphdef: Any
    params: Any
    rngs: Any
    rest: Any

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        params = self.param("nnx", lambda _: nnx.to_pure_dict(self.params))
        rest = self.variable("batch_stats", "nnx", lambda: nnx.to_pure_dict(self.rest))
        module = nnx.merge(self.graphdef, _filled(self.params, params), _copy(self.rngs), _filled(self.rest, rest.value))
        if train:
            module.train()
            if self.has_rng("dropout"):
                nnx.reseed(module, dropout=self.make_rng("dropout"))
        else:
            module.eval()
        outputs = module(x)
        if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
            rest.value = nnx.to_pure_dict(nnx.split(module, nnx.Param, nnx.RngState, ...)[3])
        return outputs


KEPT = ("params", "batch_stats")  # what a TrainState holds as it is
NOT_STATE = ("intermediates",)  # values a module sows for inspection, not state to carry between steps


class OwnCollections(nn.Module):
    """A Linen ``module`` (taking jaxdl's ``train``) whose variables include ``collections`` other than
    ``params``/``batch_stats``: its parameters live under ``params/linen`` and each of its other collections
    under ``batch_stats/<name>``, so jaxdl's state, steps and checkpoints carry them unchanged; a training
    call may change them (what ``mutable`` would allow), an inference call may not."""

    module: nn.Module
    collections: tuple[str, ...]

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        def initial(key: jax.Array) -> Any:
            return self.module.init({"params": key, "dropout": key}, x, train=False)

        key = self.make_rng("params") if self.is_initializing() else None
        # One key for params and state (one init); Flax also traces the initialiser in apply to check shapes.
        params = self.param("linen", lambda k: initial(k if key is None else key)["params"])
        state = {c: self.variable("batch_stats", c, lambda: initial(key)[c]) for c in self.collections}
        rngs = {"dropout": self.make_rng("dropout")} if train and self.has_rng("dropout") else {}
        variables = {"params": params, **{c: v.value for c, v in state.items()}}
        if not (train and not self.is_initializing() and self.is_mutable_collection("batch_stats")):
            return self.module.apply(variables, x, train=train, rngs=rngs)
        outputs, updates = self.module.apply(variables, x, train=train, rngs=rngs, mutable=list(self.collections))
        for c, v in state.items():
            v.value = updates[c]
        return outputs


def with_own_collections(model: nn.Module, example: Any) -> nn.Module:
    """``model`` (a jaxdl-ready Linen module, from `as_model`) wrapped in `OwnCollections` when its variables
    for ``example`` hold collections beyond ``params`` and ``batch_stats``; otherwise unchanged."""
    if isinstance(model, NNXModel):
        return model
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(lambda: model.init({"params": key, "dropout": key}, example, train=False))
    own = tuple(sorted(c for c in shapes if c not in ("params", *NOT_STATE)))
    if not set(own) - set(KEPT):
        return model
    return OwnCollections(model, own)


def _copy(state: Any) -> Any:
    """New variables holding ``state``'s values: NNX refuses to change a variable made outside the current trace."""
    return jax.tree.map(lambda leaf: leaf, state)


def _filled(template: Any, values: Any) -> Any:
    """A copy of ``template`` (an `nnx.State`) holding ``values`` (its pure dict)."""
    state = _copy(template)
    nnx.replace_by_pure_dict(state, values)
    return state


def as_model(model: Any) -> nn.Module:
    """``model`` (a Linen module with any training flag or none, or an NNX module) as a Linen module taking
    jaxdl's ``train`` keyword (see the module docstring); a jaxdl model comes back unchanged."""
    if isinstance(model, nnx.Module):
        graphdef, params, rngs, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return NNXModel(graphdef=graphdef, params=params, rngs=rngs, rest=rest)
    if not isinstance(model, nn.Module):
        raise TypeError(f"a model must be a flax.linen.Module or a flax.nnx.Module, got {type(model).__name__}")
    flag = training_flag(model)
    if flag is not None and flag[0] == "train":
        return model
    return TrainFlag(model, *(flag or (None, True)))
