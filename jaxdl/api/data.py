"""The data `jaxdl.fit` accepts, as jaxdl's `ArrayDataset`: checked at the boundary, split for validation.

``(x, y)`` with NumPy or JAX arrays (``x`` may be a dict of arrays, for a model with several inputs), an
`ArrayDataset`, or an iterable of ``(x, y)``
batches (a list, a generator, a function returning one, a grain loader): an iterable is read once into memory,
after which every epoch is shuffled from ``(seed, epoch)`` as for arrays. NumPy's default 64-bit arrays become
32-bit ones (float64 -> float32, int64 -> int32) unless JAX runs with ``jax_enable_x64``: what JAX would
truncate them to anyway, done once here instead of with a warning at every step.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxdl.data.pipeline import ArrayDataset, map_inputs, num_examples

_NARROW = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32, np.dtype(np.uint64): np.uint32}


def _array(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype in _NARROW and not jax.config.jax_enable_x64:
        return array.astype(_NARROW[array.dtype])
    return array


def _as_arrays(x: Any) -> Any:
    return {k: _array(v) for k, v in x.items()} if isinstance(x, dict) else _array(x)


def _read_batches(batches: Any, what: str) -> ArrayDataset:
    xs, ys = [], []
    for i, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"{what}: batch {i} is a {type(batch).__name__}; an iterable of batches must yield (x, y) pairs")
        xs.append(_as_arrays(batch[0]))
        ys.append(_array(batch[1]))
    if not xs:
        raise ValueError(f"{what}: the iterable of batches yielded nothing")
    x = {k: np.concatenate([b[k] for b in xs]) for k in xs[0]} if isinstance(xs[0], dict) else np.concatenate(xs)
    return ArrayDataset(x, np.concatenate(ys))


def registered_splits(data: Any) -> Any:
    """The `DatasetSplits` of ``data`` when it names a registered data set (``"digits"``, ``"mnist"``, ...) or is
    one already, else None: `fit` trains on its train part and validates on its validation part."""
    from jaxdl.config import default_config
    from jaxdl.data.base import DatasetSplits
    from jaxdl.data.datasets import load_dataset

    if isinstance(data, DatasetSplits):
        return data
    if not isinstance(data, str):
        return None
    config = default_config().data
    config.name = data
    return load_dataset(config)


def as_dataset(data: Any, what: str = "data") -> ArrayDataset:
    """``data`` (see the module docstring) as an `ArrayDataset` whose inputs are all finite; ``what`` names it
    in errors."""
    if isinstance(data, ArrayDataset):
        dataset = data
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = _as_arrays(data[0]), _array(data[1])
        if num_examples(x) != len(y):
            raise ValueError(f"{what}: x has {num_examples(x)} examples but y has {len(y)}")
        dataset = ArrayDataset(x, y)
    elif callable(data):
        dataset = _read_batches(data(), what)
    elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes, dict, np.ndarray, jax.Array)):
        dataset = _read_batches(data, what)
    else:
        raise TypeError(f"{what} must be (x, y) arrays, an ArrayDataset or an iterable of (x, y) "
                        f"batches, got {type(data).__name__}")
    check_finite(dataset, what)
    return dataset


def check_finite(dataset: ArrayDataset, what: str) -> None:
    """Raise ``ValueError`` naming the first NaN or infinite input or target (its index) in ``dataset``."""
    parts = dict(dataset.x) if isinstance(dataset.x, dict) else {"x": dataset.x}
    parts["y"] = dataset.y
    for name, values in parts.items():
        if np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating):
            bad = ~np.isfinite(values)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{what}: {name} has {values[index]} at index {index[0] if len(index) == 1 else index} "
                                 "(NaN and infinite values cannot be trained on; drop or impute them first)")


def split_validation(dataset: ArrayDataset, fraction: float) -> tuple[ArrayDataset, ArrayDataset | None]:
    """``(train, validation)``: the last ``fraction`` of the examples held out, in order (as Keras does, so the
    split does not depend on a seed; shuffle first if the data is sorted)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return dataset, None
    held = int(round(len(dataset) * fraction))
    if held == 0 or held == len(dataset):
        raise ValueError(f"validation_split={fraction} of {len(dataset)} examples leaves {len(dataset) - held} to train "
                         f"on and {held} to validate; use a fraction that leaves both some")
    cut = len(dataset) - held
    return (ArrayDataset(map_inputs(lambda a: a[:cut], dataset.x), dataset.y[:cut]),
            ArrayDataset(map_inputs(lambda a: a[cut:], dataset.x), dataset.y[cut:]))
