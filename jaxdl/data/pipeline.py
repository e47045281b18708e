"""Host-side batching: datasets as numpy arrays, shuffled train batches, padded eval batches.

Train batches are reshuffled every epoch from ``(seed, epoch)`` alone, so an epoch's order is reproducible
without carrying iterator state. Evaluation batches all have the same shape: the last one is padded and
masked, so the eval step compiles once and every example is counted exactly once.

Inputs ``x`` are one array ``[n, ...]`` or a dict of arrays with the same first axis (a seq2seq model's
``{"source", "target"}``); batches keep that structure.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

Batch = dict[str, Any]
ALL_ROWS = slice(None)
Inputs = np.ndarray | dict[str, np.ndarray]


def map_inputs(fn: Any, x: Inputs) -> Inputs:
    """Apply ``fn`` to the array ``x`` or to each array of the dict ``x``."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def num_examples(x: Inputs) -> int:
    """Length of the first axis of ``x`` (all arrays of a dict must agree)."""
    if not isinstance(x, dict):
        return len(x)
    lengths = {k: len(v) for k, v in x.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"inputs dict must hold arrays with one common first axis, got lengths {lengths}")
    return next(iter(lengths.values()))


@dataclasses.dataclass
class ArrayDataset:
    """Examples as aligned numpy arrays: ``x: [n, ...]`` (or a dict of such) inputs and ``y: [n, ...]`` labels or targets."""

    x: Inputs
    y: np.ndarray

    def __post_init__(self) -> None:
        if num_examples(self.x) != len(self.y):
            raise ValueError(f"x has {num_examples(self.x)} examples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def take(self, indices: np.ndarray) -> "ArrayDataset":
        """The examples at ``indices``, in that order."""
        return dataclasses.replace(self, x=map_inputs(lambda a: a[indices], self.x), y=self.y[indices])

    def train_batches(self, batch_size: int, seed: int, epoch: int, start: int = 0,
                      rows: slice = ALL_ROWS) -> Iterator[Batch]:
        """Shuffled full batches for ``epoch`` (see `train_batches`)."""
        return train_batches(self, batch_size, seed, epoch, start, rows)

    def eval_batches(self, batch_size: int, rows: slice = ALL_ROWS) -> Iterator[Batch]:
        """Every example once, in fixed-shape masked batches (see `eval_batches`)."""
        return eval_batches(self, batch_size, rows)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation determined by ``(seed, epoch)`` only."""
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def num_train_batches(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder is left out of that epoch; reshuffling rotates who is left out)."""
    return num_examples // batch_size


def _check_batch_size(batch_size: int, n: int | None = None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n is not None and n < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples")


def gather(data: ArrayDataset, indices: np.ndarray) -> Batch:
    """The batch ``{"x", "y"}`` of the examples at ``indices``."""
    return {"x": map_inputs(lambda a: a[indices], data.x), "y": data.y[indices]}


def train_batches(data: ArrayDataset, batch_size: int, seed: int, epoch: int, start: int = 0,
                  rows: slice = ALL_ROWS) -> Iterator[Batch]:
    """Shuffled full batches of ``data`` for ``epoch``, beginning at batch ``start`` (for resuming).

    ``rows`` selects the part of each global batch this process feeds (multi-host): only those examples are read.
    """
    _check_batch_size(batch_size, len(data))
    order = epoch_permutation(len(data), seed, epoch)
    for i in range(start, num_train_batches(len(data), batch_size)):
        yield gather(data, np.sort(order[i * batch_size:(i + 1) * batch_size])[rows])  # sorted gathers read memory in order


def pad_batch(batch: Batch, batch_size: int) -> Batch:
    """Zero-pad ``batch`` to ``batch_size`` rows and add ``mask`` (True for the real rows)."""
    real = len(batch["y"])
    pad = lambda a: np.concatenate([a, np.zeros((batch_size - real,) + a.shape[1:], a.dtype)]) if real < batch_size else a  # noqa: E731
    mask = np.arange(batch_size) < real
    return {"x": map_inputs(pad, batch["x"]), "y": pad(batch["y"]), "mask": mask}


def gather_padded(data: ArrayDataset, indices: np.ndarray, batch_size: int, rows: slice = ALL_ROWS) -> Batch:
    """The ``indices`` (at most ``batch_size``) as a batch of exactly ``batch_size`` rows, zero-padded with
    ``mask`` False; only the ``rows`` of that padded batch are read and returned (a host's share)."""
    if rows == ALL_ROWS:
        return pad_batch(gather(data, indices), batch_size)
    padded = np.full(batch_size, -1)
    padded[:len(indices)] = indices
    own = padded[rows]
    real = own >= 0
    batch = pad_batch(gather(data, own[real]), len(own))
    return batch  # real rows come first in `own`, so pad_batch's mask marks exactly them


def eval_batches(data: ArrayDataset, batch_size: int, rows: slice = ALL_ROWS) -> Iterator[Batch]:
    """All examples in order, in batches of exactly ``batch_size``; the last is zero-padded with ``mask`` False."""
    _check_batch_size(batch_size)
    for start in range(0, len(data), batch_size):
        yield gather_padded(data, np.arange(start, min(start + batch_size, len(data))), batch_size, rows)
