"""Keeping a damaged checkpoint's failed read to the one warning line jaxdl writes about it.

When TensorStore fails one read of a step, Orbax closes the restore's event loop while the step's other reads
are still completing; each of them then reports ``RuntimeError: Event loop is closed`` through
`sys.unraisablehook`, a traceback apiece, after the restore has already returned its error.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

_previous: Callable[[Any], None] | None = None


def _drop_stale_callbacks(unraisable: Any) -> None:
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    (_previous or sys.__unraisablehook__)(unraisable)


@contextlib.contextmanager
def quiet_stale_callbacks() -> Iterator[None]:
    """Run a checkpoint read with the closed-loop reports of orphaned reads dropped; after a failed read the
    filter stays installed, as those reports may arrive after the read has returned. Every other unraisable
    exception still reaches the hook that was there before."""
    global _previous
    installed = sys.unraisablehook is not _drop_stale_callbacks
    if installed:
        _previous, sys.unraisablehook = sys.unraisablehook, _drop_stale_callbacks
    yield  # an error leaves the filter in place
    if installed and sys.unraisablehook is _drop_stale_callbacks:
        sys.unraisablehook = _previous or sys.__unraisablehook__


def one_line(error: BaseException, limit: int = 240) -> str:
    """``error`` as one short line for a warning: its type and the first line of its message, without
    TensorStore's spec dump, cut at ``limit`` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text.split(" [tensorstore_spec=")[0]
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
