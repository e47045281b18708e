"""Seeded train/validation/test splits, plain or stratified by label."""

from __future__ import annotations

import numpy as np


def _check_fractions(*fractions: float) -> None:
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions must be >= 0 and sum to < 1, got {fractions}")


def split_indices(
    num_examples: int,
    fractions: tuple[float, ...],
    seed: int,
    labels: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split ``range(num_examples)`` into ``len(fractions) + 1`` disjoint index arrays.

    Part ``i`` gets ``fractions[i]`` of the examples and the last part gets the rest. With ``labels`` the
    split is stratified: each class is split on its own, so each part keeps the class proportions to within
    one example per class. Every index appears in exactly one part; the same seed gives the same parts.
    """
    _check_fractions(*fractions)
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [rng.permutation(num_examples)]
    else:
        labels = np.asarray(labels)
        if labels.shape[0] != num_examples:
            raise ValueError(f"{labels.shape[0]} labels for {num_examples} examples")
        groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for group in groups:
        bounds = np.round(np.cumsum(fractions) * len(group)).astype(int)
        for i, piece in enumerate(np.split(group, bounds)):
            parts[i].append(piece)
    # Shuffle within each part so a stratified part is not ordered by class.
    return [rng.permutation(np.concatenate(p)) for p in parts]


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Exactly ``size`` indices, sorted, with each class's share proportional to its frequency.

    Per-class quotas are rounded by the largest-remainder method, so they add up to ``size`` exactly.
    """
    labels = np.asarray(labels)
    if not 0 < size <= len(labels):
        raise ValueError(f"subsample size must be in [1, {len(labels)}], got {size}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - quota), kind="stable")
    quota[remainder_order[: size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def train_val_test_split(
    num_examples: int, val_fraction: float, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(train, validation, test)``; stratified by ``labels`` when given."""
    val, test, train = split_indices(num_examples, (val_fraction, test_fraction), seed, labels)
    return train, val, test
