"""Files that are never half-written: written whole beside their place, flushed, then renamed over it."""

from __future__ import annotations

import os
import pathlib
import tempfile


def write_text_atomically(path: str | pathlib.Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader (or a crash) sees the old file or the new one, never a part:
    the text goes to a temporary file in the same directory, is flushed to disk and renamed over ``path``."""
    path = pathlib.Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as handle:
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)
