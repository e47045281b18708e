"""The data set registry: every source module registers its loaders by name (`register_dataset`), and
``load_dataset(config.data)`` looks one up. The sources are imported by ``jaxdl.data``, so a new source is
a module with a registered loader, listed there.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxdl.data.base import DatasetSplits, MissingDataError

Loader = Callable[[Any], DatasetSplits]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make ``loader(config) -> DatasetSplits`` loadable as ``data.name=name``."""

    def register(loader: Loader) -> Loader:
        if name in DATASETS and DATASETS[name] is not loader:
            raise ValueError(f"data set {name!r} is registered twice ({DATASETS[name].__module__} and {loader.__module__})")
        DATASETS[name] = loader
        return loader

    return register


def load_dataset(config: Any) -> DatasetSplits:
    """Load the data set named ``config.name`` with its split and preprocessing options.

    Options: ``seed``, ``normalize`` (standardise with training mean/std), ``train_limit``/``eval_limit``
    (a seeded stratified subsample, for quick runs and few-label experiments), ``classes`` (keep these image
    classes only, relabelled 0..k-1: a task split for transfer) and per-set split fractions.
    """
    name = config["name"]
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names are {sorted(DATASETS)}")
    return DATASETS[name](config)


__all__ = ["DATASETS", "DatasetSplits", "Loader", "MissingDataError", "load_dataset", "register_dataset"]
