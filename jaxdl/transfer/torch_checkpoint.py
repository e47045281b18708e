"""Read PyTorch ``.pth`` state dicts as numpy arrays, without PyTorch and without running the file's code.

Both formats are read: the legacy one (PyTorch < 1.6: a magic-number pickle, a protocol pickle, a
system-info pickle, the main pickle whose tensors refer to storages by key, the list of storage keys,
then each storage's raw bytes) and the zip one (``data.pkl`` plus one file per storage). The pickles are
read with an allow-list: an ordered dict, tensor and parameter rebuilding and the storage types resolve to
harmless local stand-ins, and any other global a file names is refused with an error, so a malicious file
cannot execute anything.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclasses.dataclass(frozen=True)
class _Storage:
    key: str
    dtype: Any
    offset: int = 0  # a legacy view's offset into its root storage, in elements


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """A tensor waiting for its storage's bytes (they follow the pickle in the legacy format)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _Tensor:
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused) -> Any:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a state dict file needs only "
                f"{sorted(f'{m}.{n}' for m, n in _ALLOWED)}")
        return _ALLOWED[(module, name)]

    def persistent_load(self, saved_id: Any) -> _Storage:
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {saved_id!r}: not a tensor storage")
        storage_type, key = saved_id[1], str(saved_id[2])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage {key} has unsupported type {storage_type!r}")
        view = saved_id[5] if len(saved_id) > 5 else None
        if view is not None:  # legacy views: (view key, offset, size) into the root storage
            return _Storage(key, storage_type.dtype, int(view[1]))
        return _Storage(key, storage_type.dtype)


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} in a PyTorch file header")


def _tensors(tree: Any):
    """Every `_Tensor` in a nest of dicts, lists and tuples."""
    if isinstance(tree, _Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def _materialise(tree: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, _Tensor):
        flat = storages[tree.storage.key]
        itemsize = flat.dtype.itemsize
        start = tree.storage.offset + tree.offset
        if tree.shape and start + sum((n - 1) * s for n, s in zip(tree.shape, tree.stride)) >= flat.size:
            raise ValueError(f"a tensor of shape {tree.shape} reaches past its storage {tree.storage.key}: the file is damaged")
        view = np.lib.stride_tricks.as_strided(flat[start:], tree.shape, tuple(s * itemsize for s in tree.stride))
        return np.array(view)  # a copy: the result owns its memory and is writable
    if isinstance(tree, dict):
        return type(tree)((k, _materialise(v, storages)) for k, v in tree.items())
    if isinstance(tree, (list, tuple)):
        return type(tree)(_materialise(v, storages) for v in tree)
    return tree


def _read_legacy(f: BinaryIO) -> Any:
    if _NoGlobalsUnpickler(f).load() != LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint (wrong magic number)")
    _NoGlobalsUnpickler(f).load()  # protocol version
    _NoGlobalsUnpickler(f).load()  # system info (endianness, type sizes)
    unpickler = _StateDictUnpickler(f)
    tree = unpickler.load()
    keys = _NoGlobalsUnpickler(f).load()
    dtypes = {t.storage.key: t.storage.dtype for t in _tensors(tree)}
    storages = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        dtype = np.dtype(dtypes.get(key, np.uint8)).newbyteorder("<")
        raw = f.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated: {len(raw)} of {count * dtype.itemsize} bytes")
        storages[key] = np.frombuffer(raw, dtype)
    return _materialise(tree, storages)


def _read_zip(path: pathlib.Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickle_name is None:
            raise ValueError(f"{path} is a zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pickle_name[: -len("data.pkl")]
        with archive.open(pickle_name) as f:
            tree = _StateDictUnpickler(f).load()
        storages = {t.storage.key: np.frombuffer(archive.read(f"{prefix}data/{t.storage.key}"),
                                                 np.dtype(t.storage.dtype).newbyteorder("<")) for t in _tensors(tree)}
    return _materialise(tree, storages)


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict in the ``.pth`` file at ``path`` (legacy or zip format).

    A file whose top level is ``{"state_dict": {...}}`` is unwrapped. Raises ``pickle.UnpicklingError``
    naming the global if the file refers to anything beyond tensors (for example a whole pickled model).
    """
    path = pathlib.Path(path)
    if zipfile.is_zipfile(path):
        tree = _read_zip(path)
    else:
        with path.open("rb") as f:
            tree = _read_legacy(f)
    if isinstance(tree, dict) and "state_dict" in tree and isinstance(tree["state_dict"], dict):
        tree = tree["state_dict"]
    if not isinstance(tree, dict) or not all(isinstance(v, np.ndarray) for v in tree.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return dict(tree)
