"""`Throughput`: how fast training runs, added to every logging interval's record (metrics.jsonl, TensorBoard,
the progress bar): ``examples_per_second`` and ``step_seconds``, the interval's wall time over its steps.

Measured on the host at the syncs the loop makes anyway (the metrics reach the host there, so the device has
finished the interval's steps): nothing is added inside the step and no extra wait. The first interval of a
run includes compiling the step; read the later ones.
"""

from __future__ import annotations

import time
from typing import Any

from jaxdl.training.hooks.base import Hook, Loop


class Throughput(Hook):
    """Adds ``examples_per_second`` (global batch x steps / seconds) and ``step_seconds`` to each record; runs
    before the hooks that write records."""

    def __init__(self, clock: Any = time.perf_counter):
        self.clock = clock
        self.since: tuple[float, int] | None = None

    def on_fit_start(self, loop: Loop) -> None:
        self.since = (self.clock(), loop.step)

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        now = self.clock()
        start, step = self.since if self.since is not None else (now, loop.step)
        steps, seconds = loop.step - step, now - start
        if steps > 0 and seconds > 0:
            record["step_seconds"] = seconds / steps
            record["examples_per_second"] = steps * loop.batch_size / seconds
        self.since = (now, loop.step)
