import gzip
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.data.datasets import MissingDataError, load_dataset
from jaxdl.data.images import read_fashion_mnist, read_idx
from jaxdl.data.pipeline import ArrayDataset, eval_batches, train_batches
from jaxdl.util.safe_pickle import restricted_load


@given(n=st.integers(1, 200), batch=st.integers(1, 64))
def test_eval_batches_cover_every_example_exactly_once(n, batch):
    data = ArrayDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int32))
    seen = []
    for b in eval_batches(data, batch):
        assert b["x"].shape == (batch, 1) and b["mask"].shape == (batch,)
        seen.extend(b["y"][b["mask"]].tolist())
    assert seen == list(range(n))


@given(n=st.integers(8, 200), batch=st.integers(1, 8), seed=st.integers(0, 100))
def test_train_batches_reshuffle_each_epoch_reproducibly(n, batch, seed):
    data = ArrayDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int32))
    epoch = lambda e: np.concatenate([b["y"] for b in train_batches(data, batch, seed, e)])  # noqa: E731
    first, again, second = epoch(1), epoch(1), epoch(2)
    np.testing.assert_array_equal(first, again)
    assert len(first) == (n // batch) * batch and len(np.unique(first)) == len(first)
    if n >= 16:
        assert not np.array_equal(first, second)
    resumed = np.concatenate([b["y"] for b in train_batches(data, batch, seed, 1, start=1)])
    np.testing.assert_array_equal(np.sort(resumed), np.sort(first[batch:]))


def test_read_idx_round_trips(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4)).astype(np.uint8)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx(path), images)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")


def test_missing_fashion_mnist_names_the_install_command(tmp_path):
    with pytest.raises(MissingDataError, match="apt-get install dataset-fashion-mnist"):
        read_fashion_mnist(str(tmp_path))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="valid names are .*mnist"):
        load_dataset({"name": "cifar100"})


def test_restricted_unpickler_loads_arrays_and_refuses_code():
    arrays = (np.arange(3, dtype=np.float32), np.eye(2))
    loaded = restricted_load(pickle.dumps(arrays, protocol=2))
    np.testing.assert_array_equal(loaded[0], arrays[0])

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_load(pickle.dumps(Evil()))


def test_digits_split_is_stratified_and_complete():
    pytest.importorskip("sklearn")
    splits = load_dataset({"name": "digits", "seed": 3})
    sizes = [len(splits.train), len(splits.validation), len(splits.test)]
    assert sum(sizes) == 1797 and splits.train.x.shape[1:] == (8, 8, 1)
    assert splits.train.x.dtype == np.float32 and splits.train.y.dtype == np.int32
