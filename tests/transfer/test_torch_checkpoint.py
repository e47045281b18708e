"""The .pth reader against files written here in both PyTorch formats (by a stand-in `torch` module, since
PyTorch is not a dependency): round trips, views checked against a loop over every index, refusals."""

import collections
import itertools
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.transfer.torch_checkpoint import WeightsFileError, read_state_dict
from tests.transfer.pth_files import Storage, Tensor, laid_out_tensors, stand_in_torch, write_legacy, write_zip


@pytest.fixture(scope="module")
def fake_torch():
    with stand_in_torch() as torch:
        yield torch


shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4)


@settings(max_examples=10)
@given(shapes, st.sampled_from([np.float32, np.int64, np.float16]), st.sampled_from(["legacy", "zip"]),
       st.integers(0, 1000))
def test_reads_back_what_was_written_in_either_format(fake_torch, tmp_path_factory, shape_list, dtype, fmt, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=tuple(s)).astype(dtype) * 10 for s in shape_list]
    state, expected = laid_out_tensors(arrays, rng)
    path = tmp_path_factory.mktemp("pth") / "weights.pth"
    (write_legacy if fmt == "legacy" else write_zip)(path, fake_torch, state)
    got = read_state_dict(path)
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and got[name].flags.writeable
        np.testing.assert_array_equal(got[name], array)


class _RunsCode:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_a_file_that_names_any_other_global_is_refused_without_running_it(fake_torch, tmp_path):
    path = tmp_path / "evil.pth"
    write_legacy(path, fake_torch, collections.OrderedDict(w=_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os)\.system"):
        read_state_dict(path)


def test_a_truncated_file_is_reported(fake_torch, tmp_path):
    state, _ = laid_out_tensors([np.ones((3, 3), np.float32)], np.random.default_rng(0))
    path = tmp_path / "weights.pth"
    write_legacy(path, fake_torch, state)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_state_dict(path)


def _by_index_loop(flat, offset, shape, stride):
    """The view PyTorch describes, element by element in Python; None where an index leaves the storage."""
    if offset < 0 or any(n < 0 for n in shape) or any(s < 0 for s in stride):
        return None
    out = np.zeros(shape, flat.dtype)
    for index in itertools.product(*map(range, shape)):
        position = offset + sum(i * s for i, s in zip(index, stride))
        if position >= flat.size:
            return None
        out[index] = flat[position]
    return out


@settings(max_examples=40)
@given(size=st.integers(0, 12), offset=st.integers(-3, 14), fmt=st.sampled_from(["legacy", "zip"]),
       dims=st.lists(st.tuples(st.integers(-1, 4), st.integers(-2, 5)), max_size=3))
def test_any_view_is_either_the_indexed_elements_or_refused(fake_torch, tmp_path_factory, size, offset, fmt, dims):
    flat = np.arange(size, dtype=np.float32) + 1
    shape, stride = tuple(n for n, _ in dims), tuple(s for _, s in dims)
    path = tmp_path_factory.mktemp("pth") / "view.pth"
    (write_legacy if fmt == "legacy" else write_zip)(path, fake_torch, {"w": Tensor(Storage("0", flat), offset, shape, stride)})
    expected = _by_index_loop(flat, offset, shape, stride)
    if expected is None:
        with pytest.raises(WeightsFileError, match=r"view\.pth: tensor w"):
            read_state_dict(path)
    else:
        got = read_state_dict(path)["w"]
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_every_fault_is_one_error_type_naming_the_file(fake_torch, tmp_path):
    path = tmp_path / "w.pth"
    write_legacy(path, fake_torch, collections.OrderedDict(w=_RunsCode()))
    with pytest.raises(WeightsFileError, match=r"w\.pth: refusing to load global"):
        read_state_dict(path)
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(WeightsFileError, match=r"w\.pth: its header is not a readable pickle"):
        read_state_dict(path)
    write_legacy(path, fake_torch, {"w": [1, 2]})
    with pytest.raises(WeightsFileError, match="flat state dict of named tensors"):
        read_state_dict(path)
