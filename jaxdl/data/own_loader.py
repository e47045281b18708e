"""Your own data from your own code: ``data.name="own"`` with ``data.loader="FILE.py:FUNCTION"`` (or
``"package.module:FUNCTION"``).

The function receives the ``config.data`` section and returns the data: a `DatasetSplits`, a dict of
``train``/``validation``/``test`` ``(x, y)`` pairs (``validation`` and ``test`` may be left out: they are then
split from ``train``, seeded and stratified, by ``validation_fraction``/``test_fraction``) with an optional
``class_names``, or one ``(x, y)`` pair split the same way. The reference is written into the run's
``config.json``, so ``jaxdl evaluate``, ``predict`` and ``export`` load the same data the same way; a file
path is resolved against the working directory (an experiment file can pass its own ``__file__``). The
function is your code: it runs as the experiment file itself does.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import pathlib
from typing import Any, Callable

import numpy as np

from jaxdl.data.base import DatasetSplits, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.images import finish_splits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.split import split_indices


@functools.cache
def resolve_loader(reference: str) -> Callable[[Any], Any]:
    """The function ``reference`` ("FILE.py:FUNCTION" or "package.module:FUNCTION") names."""
    module_name, sep, function = reference.rpartition(":")
    if not sep or not module_name or not function:
        raise ValueError(f"data.loader must look like 'my_data.py:load' or 'package.module:load', got {reference!r}")
    if module_name.endswith(".py"):
        path = pathlib.Path(module_name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"data.loader names {module_name}, which is not a file (paths are relative to the "
                                    "working directory; an experiment file can use its __file__)")
        unique = "jaxdl_own_data_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    if not callable(getattr(module, function, None)):
        raise ValueError(f"{module_name} has no function {function!r} for data.loader")
    return getattr(module, function)


def _pair(value: Any, what: str) -> ArrayDataset:
    if isinstance(value, ArrayDataset):
        return value
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"the data loader's {what} must be an (x, y) pair, got {type(value).__name__}")
    x, y = value
    x = {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)
    return ArrayDataset(x, np.asarray(y))


@register_dataset("own")
def load_own(config: Any) -> DatasetSplits:
    """The data ``data.loader``'s function returns (see the module docstring)."""
    reference = option(config, "loader", None)
    if not reference:
        raise ValueError("data.name='own' needs data.loader='my_data.py:load' (a function of config.data returning the data)")
    data = resolve_loader(reference)(config)
    if isinstance(data, DatasetSplits):
        return data
    parts = dict(data) if isinstance(data, dict) else {"train": data}
    unknown = sorted(set(parts) - {"train", "validation", "test", "class_names"})
    if unknown or "train" not in parts:
        raise ValueError(f"the data loader returned keys {sorted(parts)}; it returns train (required), validation, test "
                         "and class_names")
    train = _pair(parts["train"], "train")
    labels = train.y if np.issubdtype(train.y.dtype, np.integer) and train.y.ndim == 1 else None
    seed = int(option(config, "seed", 0))
    missing = [name for name in ("validation", "test") if name not in parts]
    if missing:
        fractions = tuple(float(option(config, f"{name}_fraction", 0.2)) for name in missing)
        *held, kept = split_indices(len(train), fractions, seed, labels)
        parts.update({name: train.take(index) for name, index in zip(missing, held)})
        train = train.take(kept)
    validation, test = _pair(parts["validation"], "validation"), _pair(parts["test"], "test")
    names = tuple(parts.get("class_names") or (tuple(str(i) for i in range(int(labels.max()) + 1)) if labels is not None else ()))
    return finish_splits(train, validation, test, config, len(names), names, "own")
