"""Length bucketing: batches of sequences of similar length, trimmed to a few fixed lengths.

Padding every review to the longest one wastes most of a recurrent or attention step on padding. A
`BucketedDataset` groups sequences of similar length into a batch ("sortish": sorted within chunks of a
seeded shuffle, so batches stay random) and trims the batch's time axis to the smallest bucket length
that holds its longest sequence. Only ``len(buckets)`` shapes reach the compiled step, so it compiles at
most that many times.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from jaxdl.data.pipeline import (
    ALL_ROWS,
    ArrayDataset,
    Batch,
    _check_batch_size,
    epoch_permutation,
    gather,
    gather_padded,
    num_train_batches,
)


def default_buckets(max_length: int, smallest: int = 16) -> tuple[int, ...]:
    """Powers of two from ``smallest`` up to ``max_length`` (always included): ``(16, 32, ..., max_length)``."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    top = math.ceil(math.log2(max_length))
    return tuple(sorted({min(2 ** k, max_length) for k in range(int(math.log2(smallest)), top + 1)} | {max_length}))


@dataclasses.dataclass
class BucketedDataset(ArrayDataset):
    """Sequences ``x: [n, max_length]`` (padded at the end) with their true ``lengths: [n]``.

    Batches are trimmed on axis 1 to a length in ``buckets`` (ascending, the last one ``max_length``);
    ``y`` is trimmed too when it is per-step (``y: [n, max_length, ...]``, a tagger's labels).
    ``chunk_batches`` sets how many batches' worth of shuffled examples are sorted together.
    """

    lengths: np.ndarray | None = None
    buckets: tuple[int, ...] = ()
    chunk_batches: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.x, dict) or self.x.ndim < 2:
            raise ValueError("BucketedDataset needs x as one array [n, time, ...]")
        max_length = self.x.shape[1]
        if self.lengths is None:
            raise ValueError("BucketedDataset needs lengths: [n], each sequence's true length")
        self.lengths = np.asarray(self.lengths)
        if self.lengths.shape != (len(self.y),):
            raise ValueError(f"lengths must have shape ({len(self.y)},), got {self.lengths.shape}")
        self.buckets = tuple(sorted(set(self.buckets))) or default_buckets(max_length)
        if self.buckets[-1] != max_length:
            raise ValueError(f"the largest bucket must equal x's time axis {max_length}, got buckets {self.buckets}")

    def take(self, indices: np.ndarray) -> "BucketedDataset":
        """The examples at ``indices``, in that order, with their lengths."""
        return dataclasses.replace(self, x=self.x[indices], y=self.y[indices], lengths=self.lengths[indices])

    def bucket_length(self, longest: int) -> int:
        """The smallest bucket that holds a sequence of length ``longest``."""
        return next(b for b in self.buckets if b >= longest)

    def _trim(self, batch: Batch, indices: np.ndarray) -> Batch:
        time = self.x.shape[1]
        length = self.bucket_length(int(self.lengths[indices].max(initial=1)))
        batch["x"] = batch["x"][:, :length]
        if batch["y"].ndim >= 2 and batch["y"].shape[1] == time:
            batch["y"] = batch["y"][:, :length]
        return batch

    def train_batches(self, batch_size: int, seed: int, epoch: int, start: int = 0,
                      rows: slice = ALL_ROWS) -> Iterator[Batch]:
        """Full batches of similar-length sequences for ``epoch``, in an order set by ``(seed, epoch)``."""
        _check_batch_size(batch_size, len(self))
        order = epoch_permutation(len(self), seed, epoch)
        chunk = batch_size * self.chunk_batches
        # A stable sort inside each chunk of the shuffle: similar lengths meet, yet each epoch differs.
        order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")] for c in np.split(order, range(chunk, len(order), chunk))])
        count = num_train_batches(len(self), batch_size)
        batch_order = np.random.default_rng((seed, epoch, 1)).permutation(count)
        for i in batch_order[start:]:
            idx = np.sort(order[i * batch_size:(i + 1) * batch_size])
            yield self._trim(gather(self, idx[rows]), idx)  # every host trims to the global batch's bucket

    def eval_batches(self, batch_size: int, rows: slice = ALL_ROWS) -> Iterator[Batch]:
        """Every example once, shortest first, in masked batches of ``batch_size`` trimmed to their bucket."""
        _check_batch_size(batch_size)
        order = np.argsort(self.lengths, kind="stable")
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            yield self._trim(gather_padded(self, idx, batch_size, rows), idx)
