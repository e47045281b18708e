"""TensorBoard event files for a run: an optional sink, a `fit` callback, never needed by a step."""

from __future__ import annotations

import pathlib
from typing import Any


class TensorBoardLogger:
    """``fit`` callback writing each epoch's numbers (``train_loss``, ``val_accuracy``, ``epoch_seconds``...) as
    TensorBoard scalars at the epoch's global step, under ``directory``. Needs the ``tensorboard`` extra."""

    def __init__(self, directory: str | pathlib.Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError("train.tensorboard needs tensorboardX: pip install 'jaxdl[tensorboard]'") from exc
        self.writer = SummaryWriter(str(directory))

    def __call__(self, epoch: int, row: dict[str, Any], state: Any) -> None:
        step = int(row.get("step", epoch))
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                split, _, name = key.partition("_")
                tag = f"{name}/{split}" if split in ("train", "val") else key
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
