"""Checkpoints as a hook: save the state and the loop's position when the `CheckpointPolicy` says."""

from __future__ import annotations

from typing import Any

from jaxdl.checkpoint import Checkpointer
from jaxdl.training.hooks.base import Hook, Loop


class SaveCheckpoints(Hook):
    """Save through ``checkpointer`` every ``policy.every_steps`` steps (mid-epoch, with the epoch's partial
    metrics), at every ``policy.every_epochs``-th epoch end, at the early-stopping best, and after the last
    epoch; the best step stays pinned against the keep-latest policy. Placed after early stopping in the hook
    list, so an epoch's checkpoint records its own verdict. Saves happen only at synchronised steps, after the
    loop has checked the loss: a NaN state is never written. `on_fit_end` waits for the last save and raises
    its failure; `on_error` lets a running save land without raising over the error."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer

    def _mid_epoch_save_due(self, loop: Loop) -> bool:
        every = self.checkpointer.policy.every_steps
        return bool(every) and loop.step % every == 0 and loop.batch < loop.steps_per_epoch

    def wants_metrics(self, loop: Loop) -> bool:
        """Ask for a sync at the steps a mid-epoch save is due (the loss must be checked first)."""
        return self._mid_epoch_save_due(loop)

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """Save mid-epoch when due: the position resumes at the next batch with the epoch's sums so far."""
        if self._mid_epoch_save_due(loop):
            self.checkpointer.save(loop.step, loop.parallel.get_state(loop.state),
                                   loop.record(loop.epoch, loop.batch, loop.epoch_sums))

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Save at the epoch's end when the policy, a new best or the run's end asks; ``row`` ranks it for best-N."""
        every = self.checkpointer.policy.every_epochs
        best_step = loop.position.best_step
        last = loop.epoch == loop.num_epochs or loop.stopping
        if last or best_step == loop.step or (every and loop.epoch % every == 0):
            if best_step is not None:
                self.checkpointer.pinned.steps = {best_step}
            self.checkpointer.save(loop.step, loop.parallel.get_state(loop.state), loop.record(loop.epoch + 1, 0, None), row)

    def on_preempt(self, loop: Loop, stop: Any, resume_at: dict[str, Any]) -> None:
        """Save the step the run stops at and wait until it is on disk (after any save in flight); an epoch-end
        save of the same step already holds it."""
        self.checkpointer.wait()
        if loop.step not in self.checkpointer.steps():
            if loop.position.best_step is not None:
                self.checkpointer.pinned.steps = {loop.position.best_step}
            self.checkpointer.save(loop.step, loop.parallel.get_state(loop.state), resume_at)
            self.checkpointer.wait()

    def on_fit_end(self, loop: Loop) -> None:
        """Wait for the last save; a failed one fails the run."""
        self.checkpointer.close()

    def on_error(self, loop: Loop, error: BaseException) -> None:
        """Let the last good save land (a crash never half-writes one); its failure is warned about."""
        self.checkpointer.close_after_error()
