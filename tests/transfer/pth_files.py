"""Writers of PyTorch ``.pth`` files in both formats, through a stand-in `torch` module (so that the tests need
no PyTorch): valid files for the reader's round trip and crafted ones for its refusals."""

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

from jaxdl.transfer.torch_checkpoint import LEGACY_MAGIC


class Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class Tensor:
    """What torch pickles for a tensor: a storage, an offset, a size and a stride (in elements)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


@contextlib.contextmanager
def stand_in_torch():
    """A `torch` module with the globals a state dict pickle names, so that pickle can write them."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    utils._rebuild_tensor_v2 = lambda *args: None
    utils._rebuild_tensor_v2.__module__, utils._rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch._utils = utils
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _storage_type(torch, dtype):
    return {np.float32: torch.FloatStorage, np.int64: torch.LongStorage, np.float16: torch.HalfStorage}[np.dtype(dtype).type]


class _Pickler(pickle.Pickler):
    def __init__(self, file, torch, legacy):
        super().__init__(file, protocol=2)
        self.torch, self.legacy, self.storages = torch, legacy, {}

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj.array
            kind = _storage_type(self.torch, obj.array.dtype)
            if self.legacy:
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None


def laid_out_tensors(arrays, rng):
    """Each array stored in a bigger flat storage at an offset, with C or transposed (Fortran) strides."""
    state, expected = collections.OrderedDict(), {}
    for i, array in enumerate(arrays):
        offset = int(rng.integers(0, 4))
        transposed = array.ndim == 2 and bool(rng.integers(0, 2))
        laid_out = np.array(array, order="F" if transposed else "C")  # (ascontiguousarray would make scalars 1-d)
        flat = np.concatenate([np.zeros(offset, array.dtype), laid_out.ravel(order="K"), np.zeros(2, array.dtype)])
        strides = tuple(s // array.itemsize for s in laid_out.strides)
        state[f"layer{i}.weight"] = Tensor(Storage(str(i), flat), offset, array.shape, strides)
        expected[f"layer{i}.weight"] = array
    return state, expected


def write_legacy(path, torch, state):
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


def write_zip(path, torch, state, edit_pickle=None):
    """A zip-format file; ``edit_pickle(bytes) -> bytes`` changes data.pkl before it is archived (a valid zip
    around a damaged pickle)."""
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, torch, legacy=False)
    pickler.dump(state)
    data = buffer.getvalue() if edit_pickle is None else edit_pickle(buffer.getvalue())
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        # The records PyTorch's own reader requires of every zip-format file.
        archive.writestr("archive/byteorder", b"little")
        archive.writestr("archive/version", b"3\n")
        for key, array in pickler.storages.items():
            archive.writestr(f"archive/data/{key}", array.tobytes())
