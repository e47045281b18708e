"""Offline data sets, seeded splits and host-side batching.

Importing this package imports every source module, each of which registers its loaders with
`jaxdl.data.datasets.register_dataset`; `load_dataset` then finds any of them by name.
"""

from jaxdl.data import (  # noqa: F401  (they register)
    csv_table,
    detection,
    image_folder,
    images,
    own_loader,
    reviews,
    shapes,
    synthetic,
    timeseries,
)
from jaxdl.data.datasets import DATASETS, DatasetSplits, MissingDataError, load_dataset, register_dataset
from jaxdl.data.images import read_idx
from jaxdl.data.pipeline import ArrayDataset, epoch_permutation, eval_batches, num_train_batches, train_batches
from jaxdl.data.split import split_indices, train_val_test_split

__all__ = [
    "ArrayDataset", "DATASETS", "DatasetSplits", "MissingDataError", "epoch_permutation", "eval_batches",
    "load_dataset", "num_train_batches", "read_idx", "register_dataset", "split_indices", "train_batches",
    "train_val_test_split",
]
