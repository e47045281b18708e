"""A `fit` hook that redraws ``learning_curves.png`` after every epoch from the run's ``metrics.jsonl``,
so a running job's curves can be watched (the loop itself draws nothing)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from jaxdl.report import plots
from jaxdl.training.hooks import Hook, Loop


def epoch_rows(metrics_path: pathlib.Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a ``metrics.jsonl`` log, in order (a resumed run's log holds each epoch once)."""
    if not metrics_path.is_file():
        return []
    return [row for row in map(json.loads, metrics_path.read_text().splitlines()) if row.get("kind") == "epoch"]


class LearningCurves(Hook):
    """Redraw ``workdir/learning_curves.png`` after each epoch, marking ``early_stopping``'s best epoch when
    given (any object with a ``best_epoch``)."""

    def __init__(self, workdir: str | pathlib.Path, early_stopping: Any = None) -> None:
        self.workdir, self.early_stopping = pathlib.Path(workdir), early_stopping

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Redraw the figure from ``metrics.jsonl`` (written at once: nothing to flush)."""
        rows = epoch_rows(self.workdir / "metrics.jsonl")
        if rows:
            plots.plot_learning_curves(rows, self.workdir / "learning_curves.png",
                                       getattr(self.early_stopping, "best_epoch", None))
