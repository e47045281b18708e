"""`Throughput`: how fast training runs and how much of the machine it uses, added to every logging interval's
record (metrics.jsonl, TensorBoard, the progress bar).

``examples_per_second`` and ``step_seconds`` are the interval's wall time over its steps, measured on the host
at the syncs the loop makes anyway (the metrics reach the host there, so the device has finished the
interval's steps): nothing is added inside the step and no extra wait. ``flops_per_second`` is the step's
FLOP count from XLA's cost analysis (`jaxdl.training.step_cost.step_flops`, read once after the first step)
times the interval's steps per second, and ``mfu`` its share of the run's devices' measured matmul rate.
``device_memory_bytes`` and ``peak_device_memory_bytes`` appear where the backend reports memory. The first
interval of a run includes compiling the step; read the later ones.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax

from jaxdl.training.hooks.base import Hook, Loop
from jaxdl.training.step_cost import device_memory, matmul_rate, step_flops


class Throughput(Hook):
    """Adds speed, FLOP/s, utilisation and device memory to each record; runs before the hooks that write them.

    `watch` wraps the compiled train step so its FLOP count is read after its first call (``fit`` does this);
    without it, or for a step XLA cannot analyse, the record has speed and memory only. ``rate`` (a function
    of a device, default `matmul_rate`) is the per-device peak the utilisation divides by.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 rate: Callable[[jax.Device], float] | None = matmul_rate,
                 memory: Callable[[Any], dict[str, int] | None] = device_memory):
        self.clock, self.rate, self.memory = clock, rate, memory
        self.since: tuple[float, int] | None = None
        self.flops: float | None = None
        self.peak: float | None = None
        self.devices: list[jax.Device] = []

    def watch(self, train_step: Callable, per_device_programs: int = 1) -> Callable:
        """``train_step`` with its FLOP count read after its first call; ``per_device_programs`` scales the
        count of a step compiled per device (``pmap``: the devices it runs on)."""
        counted = False

        def watched(state: Any, batch: Any) -> Any:
            nonlocal counted
            out = train_step(state, batch)
            if not counted:  # the new state has the old one's shapes and shardings: the cached trace is reused
                counted = True
                self.flops = step_flops(train_step, out[0], batch, per_device_programs)
            return out

        return watched

    def on_fit_start(self, loop: Loop) -> None:
        # Where the state lives is metadata: reading it waits for nothing.
        self.devices = sorted({d for leaf in jax.tree.leaves(loop.state) if isinstance(leaf, jax.Array)
                               for d in leaf.devices()}, key=lambda d: d.id)
        self.since = (self.clock(), loop.step)

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        now = self.clock()
        start, step = self.since if self.since is not None else (now, loop.step)
        steps, seconds = loop.step - step, now - start
        if steps > 0 and seconds > 0:
            record["step_seconds"] = seconds / steps
            record["examples_per_second"] = steps * loop.batch_size / seconds
            if self.flops is not None:
                record["flops_per_second"] = self.flops * steps / seconds
                if self.peak is None and self.rate is not None and self.devices:
                    self.peak = self.rate(self.devices[0]) * len(self.devices)  # timed once, outside any interval
                if self.peak:
                    record["mfu"] = record["flops_per_second"] / self.peak
        local = [d for d in self.devices if d.process_index == jax.process_index()]
        memory = self.memory(local) if local else None
        if memory:
            record.update(memory)
        self.since = (self.clock(), loop.step)
