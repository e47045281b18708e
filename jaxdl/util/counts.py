"""The one rule for counts (batch sizes, epochs, intervals): whole numbers of at least 1."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def require_counts(counts: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first of ``counts`` (name -> value) that is not an int >= 1 (bools refused)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
