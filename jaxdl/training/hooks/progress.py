"""The progress bar: one tqdm bar per epoch with live metrics, and one line per finished epoch."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from jaxdl.training.hooks.base import Hook, Loop

SHOWN_METRICS = ("loss", "accuracy", "exact_match", "mae")  # on the bar and the epoch lines


class ProgressBar(Hook):
    """Show epoch ``e/N`` with its batches done and the last interval's `SHOWN_METRICS`; print each epoch's
    row (training and validation values, seconds). Shown only where ``loop.progress`` is set (process 0)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_epoch_start(self, loop: Loop) -> None:
        """Open the epoch's bar, already advanced past the batches a resumed run skips."""
        self.bar = tqdm(total=loop.steps_per_epoch, initial=loop.batch, desc=f"epoch {loop.epoch}/{loop.num_epochs}",
                        disable=not loop.progress, leave=True, dynamic_ncols=True)

    def on_step(self, loop: Loop) -> None:
        """Advance the bar (a counter: nothing is read from the device)."""
        self.bar.update(1)

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """Show the interval's metrics on the bar."""
        shown = {k: f"{record[k]:.4f}" for k in SHOWN_METRICS if k in record}
        if "examples_per_second" in record:
            shown["ex/s"] = f"{record['examples_per_second']:.0f}"
        if "mfu" in record:
            shown["mfu"] = f"{record['mfu']:.0%}"
        if "grad_norm" in record:
            shown["|grad|"] = f"{record['grad_norm']:.3g}"
        self.bar.set_postfix(shown)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Close the bar and print the epoch's line."""
        self.bar.close()
        message = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k.endswith(SHOWN_METRICS))
        loop.say(f"epoch {loop.epoch}: {message}  ({row['epoch_seconds']:.1f}s)")

    def on_error(self, loop: Loop, error: BaseException) -> None:
        """Close the bar so the traceback starts on a clean line."""
        if self.bar is not None:
            self.bar.close()
