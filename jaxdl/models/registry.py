"""Models by name: experiments name a model family in their config and it is looked up here."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_RESERVED = {"parent", "name"}


def register_model(name: str, constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``constructor`` (a Linen module class or a ``functools.partial`` of one) as ``name``."""
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is already registered")
    _MODELS[name] = constructor
    return constructor


def available_models() -> list[str]:
    """Registered model names."""
    return sorted(_MODELS)


def model_constructor(name: str) -> Callable[..., nn.Module]:
    """The constructor registered as ``name`` (``ValueError`` listing the valid names otherwise)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names are {available_models()}")
    return _MODELS[name]


def model_fields(constructor: Callable[..., nn.Module]) -> list[str]:
    """The hyperparameters a registered constructor accepts (its Linen dataclass fields)."""
    cls = constructor.func if isinstance(constructor, functools.partial) else constructor
    return [f.name for f in dataclasses.fields(cls) if f.name not in _RESERVED]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered as ``name`` with hyperparameters ``kwargs``.

    An unknown name or hyperparameter raises ``ValueError`` listing the valid ones.
    """
    constructor = model_constructor(name)
    valid = model_fields(constructor)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} has no hyperparameter(s) {unknown}; valid ones are {valid}")
    return constructor(**kwargs)
