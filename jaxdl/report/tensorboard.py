"""TensorBoard event files for a run: an optional sink, a `fit` hook, never needed by a step."""

from __future__ import annotations

import pathlib
from typing import Any

from jaxdl.training.hooks import Hook, Loop

# What each logging interval adds beside the metrics, and the TensorBoard section it is drawn in.
INTERVAL_SCALARS = {
    "examples_per_second": "speed", "step_seconds": "speed", "flops_per_second": "speed", "mfu": "speed",
    "learning_rate": "optimizer", "grad_norm": "optimizer", "update_norm": "optimizer", "param_norm": "optimizer",
    "device_memory_bytes": "memory", "peak_device_memory_bytes": "memory",
}


class TensorBoardLogger(Hook):
    """A `fit` hook writing each epoch's numbers (``train_loss``, ``val_accuracy``, ``epoch_seconds``...) as
    TensorBoard scalars at the epoch's global step, under ``directory``. Needs the ``tensorboard`` extra."""

    def __init__(self, directory: str | pathlib.Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError("train.tensorboard needs tensorboardX: pip install 'jaxdl[tensorboard]'") from exc
        self.writer = SummaryWriter(str(directory))

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """Each logging interval's speed, utilisation, optimizer figures and device memory at its step
        (``speed/examples_per_second``, ``optimizer/grad_norm``, ``memory/peak_device_memory_bytes``, ...)."""
        for key, group in INTERVAL_SCALARS.items():
            if key in record:
                self.writer.add_scalar(f"{group}/{key}", float(record[key]), int(record["step"]))

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Write the epoch's scalars (``train_loss`` as ``loss/train``) and flush, so a watching TensorBoard sees them."""
        step = int(row.get("step", loop.epoch))
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                split, _, name = key.partition("_")
                tag = f"{name}/{split}" if split in ("train", "val") else key
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def on_fit_end(self, loop: Loop) -> None:
        """Flush and close the event file."""
        self.writer.close()

    def on_error(self, loop: Loop, error: BaseException) -> None:
        """Close the event file: the epochs written so far stay readable."""
        self.writer.close()
