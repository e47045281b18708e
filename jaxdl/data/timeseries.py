"""Real time series shipped in installed packages: yearly sunspots (statsmodels) for forecasting, UCR GunPoint
(sktime) for classification. Files are read directly; neither package is imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, option, package_file
from jaxdl.data.datasets import register_dataset
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.split import split_indices

SUNSPOTS_FILE = "datasets/sunspots/sunspots.csv"
SOLAR_CYCLE_YEARS = 11
GUNPOINT_FILES = {"train": "datasets/data/GunPoint/GunPoint_TRAIN.ts", "test": "datasets/data/GunPoint/GunPoint_TEST.ts"}


def read_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """Yearly mean sunspot numbers 1700-2008 as ``(years [309] int, values [309] float32)``."""
    path = package_file("statsmodels", SUNSPOTS_FILE, "pip install 'jaxdl[timeseries]'")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.float32)


def sliding_windows(series: np.ndarray, window: int, horizon: int, first_target: int, end: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Examples ``(x [n, window], y [n, horizon])`` whose targets ``series[t:t + horizon]`` start at
    ``t >= first_target`` and end by ``end``; each input is the ``window`` values just before its targets."""
    starts = np.arange(max(first_target, window), end - horizon + 1)
    x = np.stack([series[t - window:t] for t in starts]) if len(starts) else np.zeros((0, window), series.dtype)
    y = np.stack([series[t:t + horizon] for t in starts]) if len(starts) else np.zeros((0, horizon), series.dtype)
    return x.astype(np.float32), y.astype(np.float32)


def seasonal_naive(windows: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Forecast step ``k`` as the value ``period`` steps (or a multiple) before it, from ``windows: [n, window]``."""
    if windows.shape[1] < period:
        raise ValueError(f"the seasonal-naive forecast needs a window of at least {period} steps, got {windows.shape[1]}")
    k = np.arange(horizon)
    back = period * (k // period + 1) - k  # how far before the window's end the reused value lies
    return windows[:, windows.shape[1] - back]


def forecast_errors(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MAE and RMSE over every forecast step."""
    err = predictions - targets
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}


@register_dataset("sunspots")
def load_sunspots(config: Any) -> DatasetSplits:
    """Forecast the next ``horizon`` (1) yearly sunspot numbers from the previous ``window`` (24) years.

    The last ``test_size`` (40) years are the test tail and the ``validation_size`` (40) before them validate;
    an example belongs to the split holding all its targets. Values are standardised with the training
    years' mean and std (``target_scale`` is that std). Baselines on the test tail: persistence (the last
    observed year repeated) and seasonal naive (the value one 11-year solar cycle earlier).
    """
    _, series = read_sunspots()
    window, horizon = int(option(config, "window", 24)), int(option(config, "horizon", 1))
    test_size, val_size = int(option(config, "test_size", 40)), int(option(config, "validation_size", 40))
    n = len(series)
    val_start, test_start = n - test_size - val_size, n - test_size
    if val_start - window < horizon or test_size < horizon or val_size < horizon:
        raise ValueError(f"sunspots has {n} years: window {window}, horizon {horizon}, validation_size {val_size} and "
                         f"test_size {test_size} leave no training examples")
    mean, std = float(series[:val_start].mean()), float(series[:val_start].std())
    scaled = (series - mean) / std
    parts = [sliding_windows(scaled, window, horizon, a, b) for a, b in ((0, val_start), (val_start, test_start), (test_start, n))]
    raw_x, raw_y = sliding_windows(series, window, horizon, test_start, n)
    baselines = {
        "persistence": forecast_errors(np.repeat(raw_x[:, -1:], horizon, axis=1), raw_y),
        "seasonal_naive": forecast_errors(seasonal_naive(raw_x, horizon, SOLAR_CYCLE_YEARS), raw_y),
    }
    train, validation, test = (ArrayDataset(x, y) for x, y in parts)
    return DatasetSplits(train, validation, test, 0, (), "sunspots", model_defaults={"horizon": horizon},
                         target_scale=std, baselines=baselines)


def read_ts_file(path: Any) -> tuple[np.ndarray, list[str]]:
    """A univariate, equal-length UCR/sktime ``.ts`` file as ``(series [n, length] float32, class labels)``."""
    rows, labels, in_data = [], [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower() == "@data"
                continue
            values, _, label = line.rpartition(":")
            if ":" in values:
                raise ValueError(f"{path}: only univariate series are supported")
            rows.append([float(v) for v in values.split(",")])
            labels.append(label)
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"{path}: series of unequal lengths")
    return np.asarray(rows, np.float32), labels


@register_dataset("gunpoint")
def load_gunpoint(config: Any) -> DatasetSplits:
    """UCR GunPoint (series of 150 hand positions; Gun-Draw vs Point) with its official 50/150 train/test split;
    ``validation_fraction`` (0.2) of the training series, stratified and seeded, validate."""
    train_x, train_labels = read_ts_file(package_file("sktime", GUNPOINT_FILES["train"], "pip install 'jaxdl[timeseries]'"))
    test_x, test_labels = read_ts_file(package_file("sktime", GUNPOINT_FILES["test"], "pip install 'jaxdl[timeseries]'"))
    classes = sorted(set(train_labels))
    train_y = np.array([classes.index(c) for c in train_labels], np.int32)
    test_y = np.array([classes.index(c) for c in test_labels], np.int32)
    val_idx, train_idx = split_indices(len(train_x), (float(option(config, "validation_fraction", 0.2)),),
                                       int(option(config, "seed", 0)), train_y)
    full = ArrayDataset(train_x, train_y)
    return DatasetSplits(full.take(train_idx), full.take(val_idx), ArrayDataset(test_x, test_y), len(classes),
                         ("gun-draw", "point") if classes == ["1", "2"] else tuple(classes), "gunpoint")
