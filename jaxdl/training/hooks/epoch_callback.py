"""A plain function ``(epoch, row, state)`` as a hook, for watchers that need nothing but each epoch's row."""

from __future__ import annotations

from typing import Any, Callable

from jaxdl.training.hooks.base import Hook, Loop


class EpochCallback(Hook):
    """Call ``function(epoch, row, state)`` after each epoch (``state`` is the placed `TrainState`)."""

    def __init__(self, function: Callable[[int, dict[str, Any], Any], None]) -> None:
        self.function = function

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """Call the function with the epoch's row."""
        self.function(loop.epoch, row, loop.state)


def as_hook(hook: Hook | Callable[[int, dict[str, Any], Any], None]) -> Hook:
    """``hook`` itself, or a plain ``(epoch, row, state)`` function wrapped as an `EpochCallback`."""
    if isinstance(hook, Hook):
        return hook
    if callable(hook):
        return EpochCallback(hook)
    raise TypeError(f"a fit hook is a jaxdl.training.hooks.Hook or a function (epoch, row, state), got {hook!r}")
