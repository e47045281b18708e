"""Preemption: SIGTERM (what a cluster scheduler sends before it takes the machine back) and SIGINT (Ctrl-C)
stop training at the next step with that step saved.

`PreemptionGuard` catches the first signal and only sets a flag: the loop finishes the step it is in, checks its
loss, has every hook record the stop (`Hook.on_preempt`: the checkpoint is written synchronously, after any save
in flight, and the stop is logged), and raises `Preempted`. A second signal is not caught: the process dies by
it at once. `jaxdl train` exits with status ``128 + signal number`` (143 for SIGTERM, 130 for SIGINT) once the
checkpoint is on disk; the same command resumes the run, bitwise as if it had not stopped.

In a multi-process run the processes must stop at the same step, or their collective save would wait forever:
there the decision is JAX's preemption sync point (`jax.experimental.multihost_utils.reached_preemption_sync_point`),
which the coordination service raises on every process at one agreed step once any of them was sent SIGTERM. The
guard then installs no handler of its own (JAX's runtime catches SIGTERM), and SIGINT keeps Python's default:
an interrupt that only one process sees cannot stop all of them at one step.
"""

from __future__ import annotations

import signal
import threading
import warnings
from types import FrameType
from typing import Any, Sequence

import jax

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(BaseException):
    """Training stopped on a signal after saving its current step. A BaseException, as KeyboardInterrupt is:
    code that catches ``Exception`` to carry on must not swallow a stop request."""

    def __init__(self, signal_name: str, step: int, epoch: int, batch: int) -> None:
        super().__init__(f"stopped by {signal_name} at step {step} (epoch {epoch}, batch {batch}); the checkpoint "
                         "of that step is saved: run the same command again to resume")
        self.signal_name, self.step, self.epoch, self.batch = signal_name, step, epoch, batch

    @property
    def exit_status(self) -> int:
        """``128 + signal number``, the shell's status for a process ended by that signal."""
        return 128 + int(signal.Signals[self.signal_name])

    def record(self) -> dict[str, Any]:
        """The stop as a JSON record (``metrics.jsonl``, ``summary.json``)."""
        return {"signal": self.signal_name, "step": self.step, "epoch": self.epoch, "batch": self.batch}


class PreemptionGuard:
    """While entered (in the main thread of a single-process run), the first SIGTERM or SIGINT is turned into a
    stop request read by `requested`; a second signal ends the process at once. Outside the main thread signals
    cannot be caught: the guard then does nothing. Multi-process runs ask JAX's preemption sync point instead."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}
        self._multi_process = jax.process_count() > 1
        self._sync_point_works = True
        self._answered: tuple[int | None, str | None] = (None, None)

    def __enter__(self) -> "PreemptionGuard":
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._caught)
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _caught(self, number: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:  # the second signal: no more waiting
            signal.signal(number, signal.SIG_DFL)
            signal.raise_signal(number)
            return
        self.signal_name = signal.Signals(number).name
        signal.signal(number, self._caught)

    def requested(self, step: int) -> str | None:
        """The signal's name if the loop should stop after ``step``, else None. Single process: whether a signal
        arrived. Multi-process: JAX's preemption sync point, the same answer on every process at every step."""
        if self._multi_process and self._sync_point_works:
            if step == self._answered[0]:  # asked again for the same step (at an epoch's end)
                return self._answered[1]
            try:
                from jax.experimental import multihost_utils

                answer = "SIGTERM" if multihost_utils.reached_preemption_sync_point(step) else None
            except Exception as error:  # no preemption service in this runtime: nothing can stop all at once
                self._sync_point_works = False
                warnings.warn(f"JAX's preemption sync point is unavailable ({error}): SIGTERM ends the run without "
                              "a save; the last checkpoint is intact", stacklevel=2)
                return None
            self._answered = (step, answer)
            return answer
        return self.signal_name


def preempt(loop: Any, hooks: Sequence[Any], signal_name: str, resume_at: dict[str, Any]) -> None:
    """Stop ``loop`` (a `jaxdl.training.hooks.Loop`) after step ``loop.step``: every hook's ``on_preempt`` records
    the stop (the checkpoint hook saves ``resume_at`` synchronously), then `Preempted` is raised."""
    done_epoch, done_batch = (loop.epoch, loop.batch) if resume_at["batch"] else (loop.epoch - 1, loop.steps_per_epoch)
    stop = Preempted(signal_name, loop.step, done_epoch, done_batch)
    for hook in hooks:
        hook.on_preempt(loop, stop, resume_at)
    raise stop
