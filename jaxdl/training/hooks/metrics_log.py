"""``metrics.jsonl``: one JSON line per logging interval and per epoch, the record every report reads."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from jaxdl.training.hooks.base import Hook, Loop


class MetricsLog(Hook):
    """Append ``{"kind": "train", ...}`` records at logging intervals, ``{"kind": "epoch", ...}`` rows and a
    ``{"kind": "preempted", ...}`` record when a signal stops the run to
    ``path`` (a resumed run first cuts the file back to its checkpoint, so each record appears once)."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = pathlib.Path(path)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one JSON line."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """Log the interval's training metrics."""
        self.write(record)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Log the epoch's row."""
        self.write({"kind": "epoch", **row})

    def on_preempt(self, loop: Loop, stop: Any, resume_at: dict[str, Any]) -> None:
        """Log the stop: ``{"kind": "preempted", "signal", "step", "epoch", "batch"}``."""
        self.write({"kind": "preempted", **stop.record()})
