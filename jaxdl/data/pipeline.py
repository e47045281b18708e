"""Host-side batching: datasets as dicts of numpy arrays, shuffled train batches, padded eval batches.

Train batches are reshuffled every epoch from ``(seed, epoch)`` alone, so an epoch's order is reproducible
without carrying iterator state. Evaluation batches all have the same shape: the last one is padded and
masked, so the eval step compiles once and every example is counted exactly once.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

Batch = dict[str, np.ndarray]


@dataclasses.dataclass
class ArrayDataset:
    """Examples as aligned numpy arrays: ``x: [n, ...]`` inputs and ``y: [n, ...]`` labels or targets."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices: np.ndarray) -> "ArrayDataset":
        """The examples at ``indices``, in that order."""
        return ArrayDataset(self.x[indices], self.y[indices])


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation determined by ``(seed, epoch)`` only."""
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def num_train_batches(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder is left out of that epoch; reshuffling rotates who is left out)."""
    return num_examples // batch_size


def train_batches(data: ArrayDataset, batch_size: int, seed: int, epoch: int, start: int = 0) -> Iterator[Batch]:
    """Shuffled full batches of ``data`` for ``epoch``, beginning at batch ``start`` (for resuming)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = num_train_batches(len(data), batch_size)
    if n == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(data)} training examples")
    order = epoch_permutation(len(data), seed, epoch)
    for i in range(start, n):
        idx = np.sort(order[i * batch_size:(i + 1) * batch_size])  # sorted gathers read memory in order
        yield {"x": data.x[idx], "y": data.y[idx]}


def eval_batches(data: ArrayDataset, batch_size: int) -> Iterator[Batch]:
    """All examples in order, in batches of exactly ``batch_size``; the last is zero-padded with ``mask`` False."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(data)
    for start in range(0, n, batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        real = len(x)
        mask = np.ones(batch_size, bool)
        if real < batch_size:
            pad = batch_size - real
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
            mask[real:] = False
        yield {"x": x, "y": y, "mask": mask}
