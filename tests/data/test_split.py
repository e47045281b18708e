import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.data.split import split_indices, train_val_test_split


@given(n=st.integers(10, 500), classes=st.integers(2, 6), val=st.floats(0.05, 0.4), test=st.floats(0.05, 0.4),
       seed=st.integers(0, 10_000))
def test_stratified_split_partitions_and_keeps_class_proportions(n, classes, val, test, seed):
    labels = np.random.default_rng(seed).integers(0, classes, n)
    train_idx, val_idx, test_idx = train_val_test_split(n, val, test, seed, labels)
    together = np.concatenate([train_idx, val_idx, test_idx])
    assert len(together) == n and len(np.unique(together)) == n  # disjoint and complete
    for part, fraction in ((val_idx, val), (test_idx, test)):
        for c in range(classes):
            in_class = (labels == c).sum()
            assert abs((labels[part] == c).sum() - fraction * in_class) <= 1


@given(n=st.integers(1, 300), seed=st.integers(0, 1000))
def test_split_is_deterministic_in_the_seed(n, seed):
    a = split_indices(n, (0.2, 0.3), seed)
    b = split_indices(n, (0.2, 0.3), seed)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="sum to < 1"):
        split_indices(10, (0.6, 0.5), 0)


@given(n=st.integers(20, 400), classes=st.integers(2, 8), fraction=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_stratified_subsample_has_exactly_the_requested_size(n, classes, fraction, seed):
    from jaxdl.data.split import stratified_subsample

    labels = np.random.default_rng(seed).integers(0, classes, n)
    size = max(1, int(fraction * n))
    idx = stratified_subsample(labels, size, seed)
    assert len(idx) == size and len(np.unique(idx)) == size
    for c in np.unique(labels):
        assert abs((labels[idx] == c).sum() - size * (labels == c).mean()) < 1 + 1e-9
