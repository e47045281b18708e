"""Offline data sets, seeded splits and host-side batching."""

from jaxdl.data.datasets import (
    DATASETS,
    DatasetSplits,
    MissingDataError,
    load_dataset,
    read_idx,
)
from jaxdl.data.pipeline import (
    ArrayDataset,
    epoch_permutation,
    eval_batches,
    num_train_batches,
    train_batches,
)
from jaxdl.data.split import split_indices, train_val_test_split

__all__ = [
    "ArrayDataset", "DATASETS", "DatasetSplits", "MissingDataError", "epoch_permutation", "eval_batches",
    "load_dataset", "num_train_batches", "read_idx", "split_indices", "train_batches", "train_val_test_split",
]
