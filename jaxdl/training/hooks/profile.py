"""`ProfileSteps`: a `jax.profiler` trace of exactly the optimizer steps ``start`` (first traced) to ``stop``
(last traced), for TensorBoard's profiler or Perfetto (docs/training.md shows how to read one).

The trace starts before step ``start`` is dispatched and stops once step ``stop`` has finished on the device
(the hook waits for that step's state: one host sync, at the end of the window only), so the trace holds those
steps' device time and nothing after them. Steps already taken when a resumed run starts are not traced again.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax

from jaxdl.training.hooks.base import Hook, Loop


def parse_steps(text: str) -> tuple[int, int]:
    """``"START:STOP"`` (1-based optimizer steps, both traced) as a pair, refusing anything else by name."""
    start, sep, stop = str(text).partition(":")
    try:
        window = (int(start), int(stop)) if sep else None
    except ValueError:
        window = None
    if window is None or not 1 <= window[0] <= window[1]:
        raise ValueError(f"a profile window is START:STOP with 1 <= START <= STOP (optimizer steps, both traced), "
                         f"got {text!r}")
    return window


class ProfileSteps(Hook):
    """Trace steps ``start``..``stop`` (1-based) into ``directory`` (``plugins/profile/<run>/*.xplane.pb``)."""

    def __init__(self, directory: str | pathlib.Path, start: int, stop: int):
        self.directory, self.start, self.stop = pathlib.Path(directory), start, stop
        parse_steps(f"{start}:{stop}")
        self.tracing = False
        self.traced: list[int] = []

    def _begin_if_due(self, loop: Loop) -> None:
        # loop.step counts steps taken: the next step dispatched is loop.step + 1.
        if not self.tracing and self.start <= loop.step + 1 <= self.stop:
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory))
            self.tracing = True

    def on_fit_start(self, loop: Loop) -> None:
        self._begin_if_due(loop)

    def on_step(self, loop: Loop) -> None:
        if self.tracing:
            self.traced.append(loop.step)
            if loop.step >= self.stop:
                jax.block_until_ready(loop.state)  # the last traced step's work belongs in the trace
                self._end()
                return
        self._begin_if_due(loop)

    def _end(self) -> None:
        if self.tracing:
            jax.profiler.stop_trace()
            self.tracing = False

    def on_fit_end(self, loop: Loop) -> None:
        self._end()

    def on_preempt(self, loop: Loop, stop: Any, resume_at: dict[str, Any]) -> None:
        self._end()

    def on_error(self, loop: Loop, error: BaseException) -> None:
        self._end()
