"""A CSV file of your own as a data set: feature columns -> ``x [n, features]``, one target column -> ``y``.

Read with pandas (quoting, missing values, types). Numeric feature columns are taken as they are;
text or boolean feature columns are one-hot encoded (their categories named ``column=value``). The target
is class labels (text, booleans or integers, numbered in sorted order, their names kept) or real values
(floats), or as ``target_kind`` says. A missing value anywhere is refused, naming its row and column.

``data.name="csv"`` with ``data.path`` and ``data.target`` (``data.features``: the columns to use, default
all others) loads it for ``jaxdl train``; the split is seeded and stratified (``validation_fraction`` and
``test_fraction``, 0.2 each) and ``normalize`` standardises each feature with the training part's mean and
standard deviation.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxdl.data.base import DatasetSplits, MissingDataError, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.images import finish_splits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.split import split_indices

TARGET_KINDS = ("auto", "classes", "values")


@dataclasses.dataclass(frozen=True)
class Table:
    """A CSV file read as arrays: ``x [n, features]`` float32, ``y`` int32 labels or float32 values,
    ``feature_names`` (one-hot columns as ``column=value``) and ``class_names`` (empty for values)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise MissingDataError("reading CSV files needs pandas: pip install 'jaxdl[files]'") from error
    return pandas


def _refuse_missing(frame: Any, path: pathlib.Path) -> None:
    missing = frame.isna().to_numpy()
    if missing.any():
        row, column = (int(i) for i in np.argwhere(missing)[0])
        raise ValueError(f"{path}: row {row + 2} (line {row + 2} of the file), column {frame.columns[column]!r} has no value "
                         f"({int(missing.sum())} missing in all); fill or drop them first")


def read_csv(path: str | pathlib.Path, target: str, features: Sequence[str] | None = None,
             target_kind: str = "auto") -> Table:
    """The `Table` of the CSV file at ``path`` (see the module docstring)."""
    pandas = _pandas()
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"target_kind must be one of {list(TARGET_KINDS)}, got {target_kind!r}")
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {path}")
    frame = pandas.read_csv(path)
    columns = list(frame.columns)
    wanted = [c for c in columns if c != target] if not features else list(features)
    unknown = [c for c in [target, *wanted] if c not in columns]
    if unknown:
        raise ValueError(f"{path} has no column(s) {unknown}; its columns are {columns}")
    if target in wanted:
        raise ValueError(f"the target {target!r} cannot also be a feature")
    frame = frame[[*wanted, target]]
    _refuse_missing(frame, path)
    x_frame = frame[wanted]
    categorical = [c for c in wanted if not pandas.api.types.is_numeric_dtype(x_frame[c]) or x_frame[c].dtype == bool]
    if categorical:
        x_frame = pandas.get_dummies(x_frame, columns=categorical, prefix_sep="=", dtype=np.float32)
    column = frame[target]
    numeric = pandas.api.types.is_numeric_dtype(column) and column.dtype != bool
    kind = target_kind if target_kind != "auto" else (
        "values" if numeric and pandas.api.types.is_float_dtype(column) else "classes")
    if kind == "values":
        if not numeric:
            raise ValueError(f"{path}: target {target!r} holds text, which cannot be real values; use target_kind='classes'")
        y, names = column.to_numpy(np.float32), ()
    else:
        values = column.to_numpy()
        classes = np.unique(values)
        y = np.searchsorted(classes, values).astype(np.int32)
        names = tuple(str(c) for c in classes)
    return Table(x_frame.to_numpy(np.float32), y, tuple(str(c) for c in x_frame.columns), names)


def _standardise(train: ArrayDataset, *others: ArrayDataset) -> list[ArrayDataset]:
    mean, std = train.x.mean(0), train.x.std(0)
    std = np.where(std > 0, std, 1.0)  # a constant column stays 0 rather than dividing by zero
    return [dataclasses.replace(d, x=((d.x - mean) / std).astype(np.float32)) for d in (train, *others)]


@register_dataset("csv")
def load_csv(config: Any) -> DatasetSplits:
    """``data.path``'s CSV file split seeded (stratified for classes) into train/validation/test."""
    path, target = option(config, "path", None), option(config, "target", None)
    if not path or not target:
        raise ValueError("data.name='csv' needs data.path (the file) and data.target (the column to predict)")
    table = read_csv(path, target, tuple(option(config, "features", ())) or None, option(config, "target_kind", "auto"))
    classes = bool(table.class_names)
    val_idx, test_idx, train_idx = split_indices(
        len(table.y), (float(option(config, "validation_fraction", 0.2)), float(option(config, "test_fraction", 0.2))),
        int(option(config, "seed", 0)), table.y if classes else None)
    full = ArrayDataset(table.x, table.y if classes else table.y[:, None])
    train, validation, test = (full.take(i) for i in (train_idx, val_idx, test_idx))
    if option(config, "normalize", False):
        train, validation, test = _standardise(train, validation, test)
    shared = {k: v for k, v in dict(config).items() if k != "normalize"}  # done per feature above
    splits = finish_splits(train, validation, test, shared, len(table.class_names), table.class_names, "csv")
    # A real-valued target is one output per example (y [n, 1]), which models learn as num_outputs=1.
    return splits if classes else dataclasses.replace(splits, model_defaults={"num_outputs": 1})
