"""The hook protocol of the training loop, and `Loop`: where the loop stands, as every hook sees it.

The loop kernel (`jaxdl.training.loop.run_loop`) only runs compiled steps and evaluations; everything else a
run does around them (the metrics log, the progress bar, early stopping, checkpoints, figures, TensorBoard) is a
`Hook`. A hook overrides the methods it needs; the kernel calls every hook's method in list order, so a hook
sees what the hooks before it did (the built-in order: log, progress, early stopping, the caller's hooks,
checkpoints, so a checkpoint holds the early-stopping verdict of its own epoch).

Per-step calls (`on_step`) come without any host synchronisation: ``loop.state`` is still being computed on
the device, and reading a value from it there would make the host wait for every step. Numbers reach the
host at logging intervals (`on_metrics`), and a hook that needs them at a particular step asks for it with
`wants_metrics`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from tqdm.auto import tqdm

from jaxdl.distributed.parallel import Parallel
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.resume import Position, to_json_leaves


@dataclasses.dataclass
class Loop:
    """What the training loop knows, shared with its hooks.

    Fixed for the run: ``num_epochs``, ``steps_per_epoch``, ``seed``, ``batch_size``, ``parallel``,
    ``workdir`` (None without one), ``early_stopping`` (the tracker, or None), ``progress`` (whether this
    process shows progress). Moving: ``state`` (the placed `TrainState`, the step's donated output), ``step``
    (optimizer steps taken), ``epoch`` (the epoch being run), ``batch`` (batches of it done),
    ``epoch_sums`` (the epoch's training metric sums on the host, as of the last sync), ``position`` (what a
    checkpoint records: history, best step, whether training stops). Hooks may call `stop` and set
    ``best_state`` (the state `fit` returns instead of the last one).
    """

    num_epochs: int
    steps_per_epoch: int
    seed: int
    batch_size: int
    parallel: Parallel
    workdir: pathlib.Path | None
    early_stopping: EarlyStopping | None
    progress: bool
    state: Any
    step: int
    position: Position
    epoch: int = 1
    batch: int = 0
    epoch_sums: Any = None
    best_state: Any = None
    preemption: Any = None  # the `PreemptionGuard` of the run, None when signals are not caught

    @property
    def history(self) -> list[dict[str, Any]]:
        """The per-epoch rows so far (``epoch``, ``step``, ``train_*``, ``val_*``, ``epoch_seconds``)."""
        return self.position.history

    @property
    def stopping(self) -> bool:
        """True once a hook asked the loop to stop after the current epoch."""
        return self.position.stopped_early

    def stop(self) -> None:
        """Stop after the current epoch (recorded in checkpoints, so a resumed run stops too)."""
        self.position.stopped_early = True

    def say(self, message: str) -> None:
        """Print ``message`` above the progress bar when this process shows progress."""
        if self.progress:
            tqdm.write(message)

    def record(self, epoch: int, batch: int, sums: Any) -> dict[str, Any]:
        """The JSON ``loop`` item a checkpoint taken now stores: run ``epoch`` next from ``batch``, with
        ``sums`` the epoch's training metrics so far (None at an epoch's start)."""
        return {"epoch": epoch, "batch": batch, "history": self.history,
                "train_seconds": self.position.train_seconds, "epoch_sums": to_json_leaves(sums),
                "best_step": self.position.best_step, "stopped_early": self.position.stopped_early,
                "seed": self.seed, "batch_size": self.batch_size,
                "early_stopping": dataclasses.asdict(self.early_stopping) if self.early_stopping else None}


class Hook:
    """A watcher of the training loop: subclass and override what you need (every method does nothing here).

    Calls, in order: `on_fit_start` once (after a resume has restored the position); per epoch
    `on_epoch_start`, then per step `wants_metrics` and `on_step`, with `on_metrics` at every logging interval,
    the epoch's last step and each step a hook wanted; `on_epoch_end` with the epoch's row; finally `on_fit_end`,
    or `on_error` when the loop raises (an exception). A SIGTERM or SIGINT (`jaxdl.training.preemption`) calls
    `on_preempt` after the step it arrived in, then `on_error` with the `Preempted` error the loop raises.
    """

    def on_fit_start(self, loop: Loop) -> None:
        """Before the first step of this call to `fit` (``loop.epoch``/``loop.batch`` say where it resumes)."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before the first step of epoch ``loop.epoch`` (from batch ``loop.batch`` when resumed mid-epoch)."""

    def wants_metrics(self, loop: Loop) -> bool:
        """Whether the step just taken (``loop.step``) should bring the metrics to the host (default False)."""
        return False

    def on_step(self, loop: Loop) -> None:
        """After every step; ``loop.state`` is on its way on the device: reading it here makes the host wait."""

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """Training metrics of the steps since the last sync, as floats: ``record`` has ``kind="train"``,
        ``epoch``, ``step``, the metrics and ``learning_rate`` when the run has a schedule. The loss is finite
        here: the loop stops on NaN/inf before any hook sees it."""

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """After epoch ``loop.epoch``'s training and validation; ``row`` is its entry of ``loop.history``."""

    def on_fit_end(self, loop: Loop) -> None:
        """After the last epoch (or an early stop); raise here to fail the run (e.g. a failed save)."""

    def on_preempt(self, loop: Loop, stop: Any, resume_at: dict[str, Any]) -> None:
        """The run is stopping on a signal (``stop``: the `Preempted` error about to be raised) after step
        ``loop.step``, whose loss is checked; ``resume_at`` is the ``loop`` record a checkpoint of it stores."""

    def on_error(self, loop: Loop, error: BaseException) -> None:
        """When the loop raises ``error``: release what the hook holds; the error propagates afterwards."""
