"""The .pth reader against files written here in both PyTorch formats (by a stand-in `torch` module, since
PyTorch is not a dependency), and its refusal to run code."""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.transfer.torch_checkpoint import LEGACY_MAGIC, read_state_dict


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    """What torch pickles for a tensor: a storage, an offset, a size and a stride (in elements)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


@pytest.fixture(scope="module")
def fake_torch():
    """A `torch` module with the globals a state dict pickle names, so that pickle can write them."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    utils._rebuild_tensor_v2 = lambda *args: None
    utils._rebuild_tensor_v2.__module__, utils._rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch._utils = utils
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch", torch)
        patch.setitem(sys.modules, "torch._utils", utils)
        yield torch


def _storage_type(torch, dtype):
    return {np.float32: torch.FloatStorage, np.int64: torch.LongStorage, np.float16: torch.HalfStorage}[np.dtype(dtype).type]


class _Pickler(pickle.Pickler):
    def __init__(self, file, torch, legacy):
        super().__init__(file, protocol=2)
        self.torch, self.legacy, self.storages = torch, legacy, {}

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            self.storages[obj.key] = obj.array
            kind = _storage_type(self.torch, obj.array.dtype)
            if self.legacy:
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None


def _tensors(arrays, rng):
    """Each array stored in a bigger flat storage at an offset, with C or transposed (Fortran) strides."""
    state, expected = collections.OrderedDict(), {}
    for i, array in enumerate(arrays):
        offset = int(rng.integers(0, 4))
        transposed = array.ndim == 2 and bool(rng.integers(0, 2))
        laid_out = np.array(array, order="F" if transposed else "C")  # (ascontiguousarray would make scalars 1-d)
        flat = np.concatenate([np.zeros(offset, array.dtype), laid_out.ravel(order="K"), np.zeros(2, array.dtype)])
        strides = tuple(s // array.itemsize for s in laid_out.strides)
        state[f"layer{i}.weight"] = _Tensor(_Storage(str(i), flat), offset, array.shape, strides)
        expected[f"layer{i}.weight"] = array
    return state, expected


def _write_legacy(path, torch, state):
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    pickler = _Pickler(buffer, torch, legacy=True)
    pickler.dump(state)
    keys = sorted(pickler.storages)
    pickle.dump(keys, buffer, protocol=2)
    for key in keys:
        array = pickler.storages[key]
        buffer.write(struct.pack("<q", array.size) + array.astype(array.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(buffer.getvalue())


def _write_zip(path, torch, state):
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, torch, legacy=False)
    pickler.dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, array in pickler.storages.items():
            archive.writestr(f"archive/data/{key}", array.tobytes())


shapes = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=4)


@settings(max_examples=10)
@given(shapes, st.sampled_from([np.float32, np.int64, np.float16]), st.sampled_from(["legacy", "zip"]),
       st.integers(0, 1000))
def test_reads_back_what_was_written_in_either_format(fake_torch, tmp_path_factory, shape_list, dtype, fmt, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=tuple(s)).astype(dtype) * 10 for s in shape_list]
    state, expected = _tensors(arrays, rng)
    path = tmp_path_factory.mktemp("pth") / "weights.pth"
    (_write_legacy if fmt == "legacy" else _write_zip)(path, fake_torch, state)
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
    _write_legacy(path, fake_torch, collections.OrderedDict(w=_RunsCode()))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os)\.system"):
        read_state_dict(path)


def test_a_truncated_file_is_reported(fake_torch, tmp_path):
    state, _ = _tensors([np.ones((3, 3), np.float32)], np.random.default_rng(0))
    path = tmp_path / "weights.pth"
    _write_legacy(path, fake_torch, state)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_state_dict(path)
