"""Stratified k-fold cross-validation, all folds trained at once as one vmapped program.

The pool is the data set's train and validation splits together (the test split stays untouched). Fold
``f`` validates on its ``1/k`` of every class and trains on the rest. Every fold starts from the same
initial state (the config's seed), so folds differ only in their data. Batches carry a leading fold axis;
each fold draws its batches from its own training examples exactly as `fit` would (its own seeded
permutation), and folds whose training sets are one example longer skip their surplus batch so every
fold takes the same number of steps.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np

from jaxdl.data.datasets import DatasetSplits, load_dataset
from jaxdl.data.pipeline import ArrayDataset, Batch
from jaxdl.experiment.build import build_experiment
from jaxdl.tune.stacked import StackedResult, fit_stacked, stack


def stratified_kfold(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint, sorted index arrays covering ``range(len(labels))``; each holds ``1/k`` of every class
    (to within one example), chosen by a permutation seeded with ``seed``."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if k > counts.min():
        raise ValueError(f"k={k} is larger than the smallest class (class {classes[counts.argmin()]} has "
                         f"{counts.min()} examples): every fold needs an example of every class; use k <= {counts.min()}")
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    offset = 0
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        # Rotate which folds get the larger pieces, so fold sizes stay within one example overall.
        pieces = np.array_split(members, k)
        for i, piece in enumerate(pieces):
            folds[(i + offset) % k].append(piece)
        offset += len(members) % k
    return [np.sort(np.concatenate(f)) for f in folds]


def _stacked_batches(iterators: list[Iterator[Batch]], count: int | None) -> Iterator[Batch]:
    """Zip per-fold batch iterators into batches with a leading fold axis (``count`` batches at most)."""
    for group in itertools.islice(zip(*iterators), count):
        yield jax.tree.map(lambda *leaves: np.stack(leaves), *group)


def _padded_eval_batches(parts: list[ArrayDataset], batch_size: int) -> Iterator[Batch]:
    """Per-fold evaluation batches, stacked; a fold with fewer batches gets fully masked ones."""
    lists = [list(p.eval_batches(batch_size)) for p in parts]
    longest = max(len(batches) for batches in lists)
    for batches in lists:
        while len(batches) < longest:
            empty = dict(batches[0])
            empty["mask"] = np.zeros_like(empty["mask"])
            batches.append(empty)
    yield from _stacked_batches([iter(b) for b in lists], None)


def _concat(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
    if isinstance(a.x, dict):
        x = {key: np.concatenate([a.x[key], b.x[key]]) for key in a.x}
    else:
        x = np.concatenate([a.x, b.x])
    return ArrayDataset(x, np.concatenate([a.y, b.y]))


@dataclasses.dataclass
class KFoldResult:
    """Per-fold validation metrics after the last epoch, their mean and standard deviation, and the run."""

    folds: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    result: StackedResult

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: per-fold, mean and std of every validation metric."""
        return {"folds": self.folds, "mean": self.mean, "std": self.std, "k": len(self.folds),
                "schedule": self.result.schedule, "step_ms": self.result.step_ms}


def fold_splits(data: DatasetSplits, k: int, seed: int) -> list[tuple[ArrayDataset, ArrayDataset]]:
    """``(train, validation)`` of each fold over the pool ``data.train + data.validation``."""
    pool = _concat(data.train, data.validation)
    folds = stratified_kfold(pool.y, k, seed)
    everything = np.arange(len(pool))
    return [(pool.take(np.setdiff1d(everything, held_out)), pool.take(held_out)) for held_out in folds]


def cross_validate(config: ml_collections.ConfigDict, k: int = 5, schedule: str = "auto",
                   data: DatasetSplits | None = None) -> KFoldResult:
    """Stratified ``k``-fold cross-validation of the experiment ``config`` (see the module doc).

    ``schedule`` is `fit_stacked`'s: ``"vmap"`` trains the k folds as one program, ``"sequential"`` one by
    one with the same batches (the same numbers), ``"auto"`` (the default) whichever a timing says is faster.
    """

    config = ml_collections.ConfigDict(config.to_dict())
    config.train.strategy = "jit"  # the folds share one device through vmap
    data = data if data is not None else load_dataset(config.data)
    splits = fold_splits(data, k, config.data.seed)
    exp = build_experiment(config, data=dataclasses.replace(data, train=splits[0][0], validation=splits[0][1]))
    batch_size, eval_batch_size = config.data.batch_size, config.data.eval_batch_size
    steps = min(len(train) for train, _ in splits) // batch_size
    if steps == 0:
        raise ValueError(f"data.batch_size {batch_size} is larger than a fold's {min(len(t) for t, _ in splits)} training examples")

    def batches(epoch: int) -> Iterator[Batch]:
        return _stacked_batches([train.train_batches(batch_size, config.data.seed, epoch) for train, _ in splits], steps)

    def validation() -> Iterator[Batch]:
        return _padded_eval_batches([val for _, val in splits], eval_batch_size)

    result = fit_stacked(stack([exp.state] * k), exp.pure_train_step, exp.pure_eval_step, batches,
                         config.train.num_epochs, validation, per_trial_data=True, schedule=schedule)
    folds = [{key.removeprefix("val_"): value for key, value in row.items() if key.startswith("val_")}
             for row in result.history[-1]]
    keys = [key for key in folds[0] if key != "count"]
    mean = {key: float(np.mean([f[key] for f in folds])) for key in keys}
    std = {key: float(np.std([f[key] for f in folds])) for key in keys}
    return KFoldResult(folds, mean, std, result)
