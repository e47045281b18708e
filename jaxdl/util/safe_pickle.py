"""Unpickling with an allow-list, for data files that come from outside.

Plain ``pickle.load`` runs whatever code a file names; this loader resolves only the globals it is told are
safe (for example ``numpy.ndarray``) and refuses every other one with an error naming it.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any, BinaryIO, Iterable

NUMPY_ARRAY_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1"): it only encodes text.
    ("_codecs", "encode"),
})

# Pickles written under numpy 1.x name numpy.core; numpy 2 moved it to numpy._core.
_RENAMED_MODULES = {"numpy.core.multiarray": "numpy._core.multiarray"}


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, allowed: frozenset[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not in the allow-list {sorted(self._allowed)}"
            )
        module = _RENAMED_MODULES.get(module, module)
        return getattr(importlib.import_module(module), name)


def restricted_load(file: BinaryIO | bytes, allowed: Iterable[tuple[str, str]] = NUMPY_ARRAY_GLOBALS, **kwargs: Any) -> Any:
    """Unpickle ``file`` (a binary file or bytes) resolving only ``(module, name)`` globals in ``allowed``.

    Extra keyword arguments go to `pickle.Unpickler` (e.g. ``encoding="latin1"`` for Python 2 pickles).
    """
    if isinstance(file, (bytes, bytearray)):
        file = io.BytesIO(file)
    return _AllowListUnpickler(file, frozenset(allowed), **kwargs).load()
