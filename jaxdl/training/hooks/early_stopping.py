"""Early stopping as a hook: track the monitored metric each epoch, remember the best state, stop on patience."""

from __future__ import annotations

from typing import Any

import jax

from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.hooks.base import Hook, Loop


class EarlyStop(Hook):
    """Feed each epoch's row to ``tracker`` (an `EarlyStopping`); on a new best with ``restore_best``, keep a
    copy of the state as ``loop.best_state`` and its step as the position's ``best_step`` (the checkpoint hook
    pins it); after ``patience`` epochs without improvement, stop the loop."""

    def __init__(self, tracker: EarlyStopping) -> None:
        self.tracker = tracker

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Update the tracker with ``row``."""
        tracker = self.tracker
        if tracker.update(loop.epoch, row) and tracker.restore_best:
            # Its own buffers: the next step donates (and so overwrites) the state's.
            loop.best_state = jax.tree.map(lambda a: a.copy(), loop.state)
            loop.position.best_step = loop.step
        if tracker.should_stop:
            loop.stop()
            loop.say(f"early stopping after epoch {loop.epoch}: {tracker.monitor} has not improved for "
                     f"{tracker.patience} epochs (best {tracker.best_value:.4f} at epoch {tracker.best_epoch})")
