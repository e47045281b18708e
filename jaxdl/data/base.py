"""What every data set loader returns (`DatasetSplits`) and the helpers loaders share."""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

from jaxdl.data.pipeline import ArrayDataset


@dataclasses.dataclass
class DatasetSplits:
    """A data set's ``train``, ``validation`` and ``test`` parts and what describes them.

    ``model_defaults`` are hyperparameters the data dictates (a tokenizer's ``vocab_size``, a sequence's
    ``max_length``) which a model receives unless its config sets them. Regression targets are divided by
    ``target_scale``; ``baselines`` holds reference test metrics (e.g. persistence forecasts) in the
    original units. ``test_parts`` are named subsets of ``test`` (e.g. by source) also evaluated on their own.
    ``tokenizer`` (text data) is saved with a run so that evaluation encodes text with the same ids.
    """

    train: ArrayDataset
    validation: ArrayDataset
    test: ArrayDataset
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    model_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    target_scale: float = 1.0
    baselines: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    test_parts: dict[str, ArrayDataset] = dataclasses.field(default_factory=dict)
    tokenizer: Any = None


class MissingDataError(FileNotFoundError):
    """A data set's package is not installed; the message names the command that installs it."""


def option(config: Any, key: str, default: Any) -> Any:
    """``config[key]``, or ``default`` where the field is missing or None."""
    value = config.get(key, None)
    return default if value is None else value


def package_file(package: str, relative: str, install: str) -> pathlib.Path:
    """The data file ``relative`` inside the installed ``package``, found without importing the package.

    Raises `MissingDataError` naming the ``install`` command when the package or the file is absent.
    """
    # find_spec locates the package without running its __init__ (some data packages do work at import).
    spec = importlib.util.find_spec(package)
    for location in list(spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(location) / relative
        if path.is_file():
            return path
    raise MissingDataError(f"{relative} of the package {package!r} was not found (is another package named {package!r} "
                           f"shadowing it?): install it with `{install}`")
