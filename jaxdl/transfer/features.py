"""Precomputed backbone features: with a frozen backbone, its output for an example never changes, so it is
computed once per example and the head trains on the cached vectors (feature extraction at the cost of
one inference pass instead of one per epoch).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from jaxdl.data.pipeline import ArrayDataset, map_inputs

LENGTH_QUANTUM = 32  # sequence batches are trimmed to a multiple of this: few shapes, few compilations


def extract_features(features: Callable[[jax.Array], jax.Array], data: ArrayDataset, batch_size: int) -> ArrayDataset:
    """``ArrayDataset(features(x), y)`` for every example of ``data``, in order. ``features`` maps a batch of
    inputs to ``[batch, d]`` (compile it). Sequences with ``lengths`` are processed shortest first and each
    batch is trimmed to its longest member (rounded up to `LENGTH_QUANTUM`), so padding costs little."""
    n = len(data)
    lengths = getattr(data, "lengths", None)
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    out = None
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        real = len(index)
        padded = np.concatenate([index, np.repeat(index[-1:], batch_size - real)])  # fixed batch shape
        x = map_inputs(lambda a: a[padded], data.x)
        if lengths is not None:
            width = min(-(-int(lengths[index].max()) // LENGTH_QUANTUM) * LENGTH_QUANTUM, x.shape[1])
            x = x[:, :width]
        values = np.asarray(features(x))[:real]
        if out is None:
            out = np.zeros((n,) + values.shape[1:], values.dtype)
        out[index] = values
    if out is None:
        raise ValueError("cannot extract features of an empty data set")
    return ArrayDataset(out, data.y)
