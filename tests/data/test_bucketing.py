import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.bucketing import BucketedDataset, default_buckets


def _dataset(lengths, max_length, tagged=False):
    n = len(lengths)
    x = np.zeros((n, max_length), np.int32)
    for i, length in enumerate(lengths):
        x[i, :length] = i + 1  # each row's tokens name the row
    y = np.where(x > 0, x, -1) if tagged else np.arange(n, dtype=np.int32)
    return BucketedDataset(x, y, lengths=np.asarray(lengths), buckets=default_buckets(max_length, smallest=4))


@settings(max_examples=10)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=60), batch=st.integers(1, 9), seed=st.integers(0, 50))
def test_bucketed_batches_hold_whole_sequences_trimmed_to_a_bucket(lengths, batch, seed):
    data = _dataset(lengths, 40)
    seen = []
    for b in data.eval_batches(batch):
        rows = b["y"][b["mask"]]
        seen.extend(rows.tolist())
        width = b["x"].shape[1]
        assert width in data.buckets and b["x"].shape[0] == batch
        assert width >= max(lengths[r] for r in rows)  # nothing real is cut
        assert width == data.bucket_length(max(lengths[r] for r in rows))
    assert sorted(seen) == list(range(len(lengths)))  # every example exactly once
    if len(lengths) >= batch:
        train = [b["y"] for b in data.train_batches(batch, seed, 1)]
        again = [b["y"] for b in data.train_batches(batch, seed, 1)]
        assert all(np.array_equal(a, b) for a, b in zip(train, again))
        flat = np.concatenate(train)
        assert len(flat) == (len(lengths) // batch) * batch and len(set(flat.tolist())) == len(flat)
        resumed = [b["y"] for b in data.train_batches(batch, seed, 1, start=1)]
        assert all(np.array_equal(a, b) for a, b in zip(resumed, train[1:]))


def test_bucketing_reduces_padding_on_mixed_lengths():
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(2000) < 0.5, rng.integers(5, 20, 2000), rng.integers(100, 256, 2000))
    data = _dataset(lengths.tolist(), 256)
    cells = sum(b["x"].size for b in data.train_batches(32, 0, 1))
    used = sum(int(data.lengths[np.isin(data.y, b["y"])].sum()) for b in data.train_batches(32, 0, 1))
    unbucketed = data.lengths.mean() / 256
    assert used / cells > 0.65 and used / cells > 1.5 * unbucketed


def test_per_step_labels_are_trimmed_with_their_inputs():
    data = _dataset([3, 5], 16, tagged=True)
    (b,) = data.eval_batches(2)
    assert b["y"].shape == b["x"].shape == (2, 8)


def test_buckets_must_end_at_the_padded_length():
    with pytest.raises(ValueError, match="largest bucket"):
        BucketedDataset(np.zeros((2, 10), np.int32), np.zeros(2), lengths=np.array([1, 2]), buckets=(4, 8))
    with pytest.raises(ValueError, match="lengths must have shape"):
        BucketedDataset(np.zeros((2, 10), np.int32), np.zeros(2), lengths=np.array([1, 2, 3]))
