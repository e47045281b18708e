"""Read PyTorch ``.pth`` state dicts as numpy arrays, without PyTorch and without running the file's code.

Both formats are read: the legacy one (PyTorch < 1.6: a magic-number pickle, a protocol pickle, a
system-info pickle, the main pickle whose tensors refer to storages by key, the list of storage keys,
then each storage's raw bytes) and the zip one (``data.pkl`` plus one file per storage).

A weights file comes from outside, so the reader is safe by construction. The pickles are read with an
allow-list: an ordered dict, tensor and parameter rebuilding and the storage types resolve to local stand-ins
that a pickle cannot modify, and any other global is refused, so no code of the file runs. Every tensor view
is checked against its storage before numpy sees it (no negative sizes, offsets or strides; the furthest
element inside the storage, computed in Python integers so nothing overflows). Sizes are bounded by the file:
a storage must fit in the bytes that are there, a zip member may not inflate beyond `MAX_INFLATION` times the
archive, and the arrays returned may not exceed `MAX_OUTPUT_RATIO` times the file (a zero-stride view could
otherwise expand a few bytes into gigabytes). The state dict must be flat, so the work done is linear in the
file however its references are shared. Every fault raises one `WeightsFileError` naming the file and the fault.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pathlib
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
MAX_INFLATION = 64  # zip members together may hold at most this many times the archive's bytes (PyTorch stores them)
MAX_OUTPUT_RATIO = 4  # returned arrays at most this many times the file's bytes (tied weights share a storage)
MAX_DIMS = 32
_SLACK = 1 << 20  # bytes every bound allows on top, so that tiny files are not refused for their headers


class WeightsFileError(pickle.UnpicklingError, ValueError):
    """A weights file that is not a readable state dict: damaged, crafted, or more than tensors."""


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: Any


@dataclasses.dataclass(frozen=True, slots=True)
class _Global:
    """An allow-listed global; frozen with slots, so a pickle's BUILD cannot change it."""

    function: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


@dataclasses.dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: Any
    offset: int = 0  # a legacy view's offset into its root storage, in elements
    size: int | None = None  # a legacy view's length, in elements


@dataclasses.dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor waiting for its storage's bytes (they follow the pickle in the legacy format)."""

    storage: _Storage
    offset: Any
    shape: Any
    stride: Any


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _Tensor:
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused) -> Any:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _natural(value: Any, what: str) -> int:
    """``value`` as a Python int >= 0 (bools and floats are not sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise WeightsFileError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if (module, name) not in _ALLOWED:
            allowed = sorted([f"{m}.{n}" for m, n in _ALLOWED] + [f"torch.{n}" for n in STORAGE_DTYPES])
            raise WeightsFileError(f"refusing to load global {module}.{name}: a state dict file needs only {allowed}")
        return _Global(_ALLOWED[(module, name)])

    def persistent_load(self, saved_id: Any) -> _Storage:
        if not (isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage"):
            raise WeightsFileError(f"unknown persistent id {saved_id!r}: not a tensor storage")
        storage_type, key = saved_id[1], saved_id[2]
        if not isinstance(storage_type, _StorageType):
            raise WeightsFileError(f"storage {key!r} has unsupported type {storage_type!r}")
        if not isinstance(key, str) or not key.isalnum():
            raise WeightsFileError(f"storage key {key!r} is not a plain name")
        view = saved_id[5] if len(saved_id) > 5 else None
        if view is not None:  # legacy views: (view key, offset, size) into the root storage
            if not (isinstance(view, tuple) and len(view) == 3):
                raise WeightsFileError(f"storage {key} has a malformed view {view!r}")
            return _Storage(key, storage_type.dtype, _natural(view[1], "a view offset"), _natural(view[2], "a view size"))
        return _Storage(key, storage_type.dtype)


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise WeightsFileError(f"refusing to load global {module}.{name} in a PyTorch file header")


def _unpickle(unpickler: pickle.Unpickler, what: str) -> Any:
    try:
        return unpickler.load()
    except WeightsFileError:
        raise
    except (Exception, RecursionError) as error:  # any malformed pickle: struct, index, type, EOF... errors
        raise WeightsFileError(f"its {what} is not a readable pickle ({type(error).__name__}: {error})") from None


def _state_dict(tree: Any) -> dict[str, _Tensor]:
    """The flat ``{name: tensor}`` dict of an unpickled file (``{"state_dict": {...}}`` unwrapped)."""
    if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict):
        tree = tree["state_dict"]
    if not isinstance(tree, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in tree.items()):
        raise WeightsFileError("it does not hold a flat state dict of named tensors")
    return dict(tree)


def _view(tensor: _Tensor, flat: np.ndarray, name: str) -> np.ndarray:
    """``tensor``'s elements, copied out of ``flat`` after every bound was checked."""
    shape, stride = tensor.shape, tensor.stride
    if not (isinstance(shape, tuple) and isinstance(stride, tuple)) or len(shape) != len(stride) or len(shape) > MAX_DIMS:
        raise WeightsFileError(f"tensor {name} has a malformed size {shape!r} / stride {stride!r}")
    shape = tuple(_natural(n, f"tensor {name}'s size") for n in shape)
    stride = tuple(_natural(n, f"tensor {name}'s stride") for n in stride)
    start = tensor.storage.offset + _natural(tensor.offset, f"tensor {name}'s storage offset")
    limit = flat.size if tensor.storage.size is None else tensor.storage.offset + tensor.storage.size
    if limit > flat.size:
        raise WeightsFileError(f"tensor {name}'s storage view ends at element {limit}, past its storage of {flat.size}")
    if 0 not in shape:  # an empty tensor reads nothing, wherever it starts (as in PyTorch)
        last = start + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= limit:
            raise WeightsFileError(f"tensor {name} of size {shape} reaches element {last} of a storage of {limit}")
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat[start:], shape, tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view)  # a copy: the result owns its memory and is writable


def _materialise(tensors: dict[str, _Tensor], storages: dict[str, np.ndarray], budget: int) -> dict[str, np.ndarray]:
    out = {}
    for name, tensor in tensors.items():
        if tensor.storage.key not in storages:
            raise WeightsFileError(f"tensor {name} refers to storage {tensor.storage.key}, which the file lacks")
        flat = storages[tensor.storage.key]
        shape = tensor.shape if isinstance(tensor.shape, tuple) else ()
        budget -= flat.dtype.itemsize * int(np.prod([_natural(n, f"tensor {name}'s size") for n in shape], dtype=object))
        if budget < 0:
            raise WeightsFileError(f"its tensors would take more than {MAX_OUTPUT_RATIO}x the file's size (at {name})")
        out[name] = _view(tensor, flat, name)
    return out


def _dtypes(tensors: dict[str, _Tensor]) -> dict[str, np.dtype]:
    dtypes: dict[str, np.dtype] = {}
    for name, tensor in tensors.items():
        dtype = np.dtype(tensor.storage.dtype).newbyteorder("<")
        if dtypes.setdefault(tensor.storage.key, dtype) != dtype:
            raise WeightsFileError(f"storage {tensor.storage.key} is used with two dtypes (at {name})")
    return dtypes


def _read_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    if _unpickle(_NoGlobalsUnpickler(f), "header") != LEGACY_MAGIC:
        raise WeightsFileError("it is not a PyTorch checkpoint (wrong magic number)")
    _unpickle(_NoGlobalsUnpickler(f), "header")  # protocol version
    _unpickle(_NoGlobalsUnpickler(f), "header")  # system info (endianness, type sizes)
    tensors = _state_dict(_unpickle(_StateDictUnpickler(f), "state dict"))
    keys = _unpickle(_NoGlobalsUnpickler(f), "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise WeightsFileError("its storage key list is not a list of distinct names")
    dtypes, storages = _dtypes(tensors), {}
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise WeightsFileError(f"storage {key} is truncated: its size is missing")
        (count,) = struct.unpack("<q", header)
        dtype = dtypes.get(key, np.dtype(np.uint8))
        nbytes = _natural(count, f"storage {key}'s size") * dtype.itemsize
        if nbytes > len(data) - f.tell():  # checked before reading: a claimed 2**62 elements allocates nothing
            raise WeightsFileError(f"storage {key} is truncated: {len(data) - f.tell()} of {nbytes} bytes")
        storages[key] = np.frombuffer(f.read(nbytes), dtype)
    return _materialise(tensors, storages, MAX_OUTPUT_RATIO * len(data) + _SLACK)


def _read_zip(path: pathlib.Path) -> dict[str, np.ndarray]:
    file_size = path.stat().st_size
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise WeightsFileError(f"it is not a readable zip archive ({error})") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        inflated = sum(info.file_size for info in members.values())
        if inflated > MAX_INFLATION * file_size + _SLACK:
            raise WeightsFileError(f"its members would inflate to {inflated} bytes, more than {MAX_INFLATION}x the file")
        pickle_name = next((n for n in members if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pickle_name is None:
            raise WeightsFileError("it is a zip file without data.pkl: not a PyTorch checkpoint")
        prefix = pickle_name[: -len("data.pkl")]

        def member(name: str) -> bytes:
            if name not in members:
                raise WeightsFileError(f"its member {name} is missing")
            try:
                with archive.open(members[name]) as f:
                    return f.read(members[name].file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
                raise WeightsFileError(f"its member {name} is damaged ({error})") from None

        tensors = _state_dict(_unpickle(_StateDictUnpickler(io.BytesIO(member(pickle_name))), "data.pkl"))
        dtypes = _dtypes(tensors)
        storages = {}
        for key, dtype in dtypes.items():
            raw = member(f"{prefix}data/{key}")
            storages[key] = np.frombuffer(raw[: len(raw) - len(raw) % dtype.itemsize], dtype)
    return _materialise(tensors, storages, MAX_OUTPUT_RATIO * file_size + _SLACK)


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict in the ``.pth`` file at ``path`` (legacy or zip format).

    A file whose top level is ``{"state_dict": {...}}`` is unwrapped. Any fault (a global beyond tensors, e.g.
    a whole pickled model; a damaged or truncated file; a view outside its storage; sizes beyond the bounds in
    this module's description) raises `WeightsFileError` naming ``path`` and the fault, before any array is
    returned.
    """
    path = pathlib.Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path.read_bytes())
    except WeightsFileError as error:
        raise WeightsFileError(f"{path}: {error}") from None
