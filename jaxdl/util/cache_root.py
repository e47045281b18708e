"""Where jaxdl keeps what it computes once per machine (converted weights, lowering choices, built kernels)."""

from __future__ import annotations

import os
import pathlib


def cache_root() -> pathlib.Path:
    """``$JAXDL_CACHE`` if set, else ``~/.cache/jaxdl``; each user of it takes a subdirectory of its own."""
    if os.environ.get("JAXDL_CACHE"):
        return pathlib.Path(os.environ["JAXDL_CACHE"])
    return pathlib.Path.home() / ".cache" / "jaxdl"
