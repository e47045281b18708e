"""The training loop: epochs of compiled steps, evaluation, early stopping, logs, curves, a checkpoint.

The loop is thin on purpose: all numerical work is in the compiled steps. The host only waits for the
device at logging intervals, and never lets more than `MAX_STEPS_IN_FLIGHT` steps queue up (a long
queue of collective-bearing steps can deadlock multi-device CPU runs, and it buys nothing).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxdl import checkpoint, plots
from jaxdl.data.pipeline import ArrayDataset, num_train_batches
from jaxdl.data.prefetch import prefetch
from jaxdl.metrics import Metrics
from jaxdl.train.early_stopping import EarlyStopping
from jaxdl.train.parallel import Parallel
from jaxdl.train.state import InputSpec, TrainState, check_inputs

MAX_STEPS_IN_FLIGHT = 16
JIT = Parallel("jit")
SHOWN_METRICS = ("loss", "accuracy", "exact_match", "mae")  # on the progress bar and epoch lines


@dataclasses.dataclass
class FitResult:
    """What `fit` returns: the final (or best) ``state``, per-epoch ``history`` and the ``summary`` dict."""

    state: TrainState
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def _merge(a: Metrics | None, b: Metrics) -> Metrics:
    return b if a is None else a.merge(b)


_merge_jit = jax.jit(_merge)


def evaluate(state: TrainState, eval_step: Callable, data: ArrayDataset, batch_size: int,
             parallel: Parallel = JIT) -> dict[str, float]:
    """Metrics of ``state`` (placed by ``parallel``, which compiled ``eval_step``) on every example of
    ``data`` (last batch padded and masked, so nothing is dropped and the eval step compiles once). The batch
    size is rounded up to a multiple of the data-parallel devices: padding rows cost a little compute, never
    a result."""
    shares = parallel.data_parallel_size
    batch_size = -(-batch_size // shares) * shares
    total = None
    for batch in prefetch(data.eval_batches(batch_size, parallel.host_rows(batch_size)), parallel.put_batch):
        total = _merge_jit(total, eval_step(state, batch)) if total is not None else eval_step(state, batch)
    if total is None:
        raise ValueError("cannot evaluate on an empty data set")
    return parallel.to_host(total).compute()


class _JsonlWriter:
    def __init__(self, path: pathlib.Path | None) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _check_finite(value: float, step: int, epoch: int, learning_rate: float | None) -> None:
    if not math.isfinite(value):
        lr = f" (learning rate {learning_rate:.3g})" if learning_rate is not None else ""
        raise FloatingPointError(
            f"training loss became {value} at step {step}, epoch {epoch}{lr}. Nothing was saved from this state: "
            "the last good checkpoint is untouched. Lower optimizer.learning_rate, set optimizer.clip_norm, "
            "or check the inputs for NaN/inf."
        )


def fit(
    state: TrainState,
    *,
    train_step: Callable,
    eval_step: Callable,
    train_data: ArrayDataset,
    batch_size: int,
    num_epochs: int,
    seed: int = 0,
    validation_data: ArrayDataset | None = None,
    test_data: ArrayDataset | None = None,
    eval_batch_size: int = 1000,
    early_stopping: EarlyStopping | None = None,
    workdir: str | pathlib.Path | None = None,
    log_every: int = 50,
    schedule: Callable[[int], Any] | None = None,
    input_spec: InputSpec | None = None,
    progress: bool = True,
    parallel: Parallel = JIT,
    callbacks: Sequence[Callable[[int, dict[str, Any], TrainState], None]] = (),
) -> FitResult:
    """Train ``state`` for ``num_epochs`` epochs with compiled ``train_step``/``eval_step``.

    Each epoch reshuffles ``train_data`` from ``(seed, epoch)``, shows a progress bar with live loss and
    accuracy (refreshed every ``log_every`` steps, the only times the host waits for the device), then
    evaluates on ``validation_data``. ``early_stopping`` stops on any logged metric and, with
    ``restore_best``, returns the best epoch's state. With a ``workdir`` the loop appends to
    ``metrics.jsonl``, draws ``learning_curves.png``, saves the returned state as an Orbax checkpoint in
    ``checkpoints/`` and writes ``summary.json`` (validation and test metrics, wall time).

    ``parallel`` (from `make_parallel`, and the one that compiled the steps) places the state and the
    batches on the devices; the returned state is the single logical copy. In a multi-host run every process
    calls `fit`; only process 0 writes logs, curves and summaries, and all take part in the checkpoint.
    """
    start_time = time.perf_counter()
    workdir = pathlib.Path(workdir) if workdir is not None else None
    writes = workdir is not None and jax.process_index() == 0
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    log = _JsonlWriter(workdir / "metrics.jsonl" if writes else None)
    progress = progress and jax.process_index() == 0
    parallel.check_batch_size(batch_size)
    if input_spec is not None:
        for name, data in (("train", train_data), ("validation", validation_data), ("test", test_data)):
            if data is not None:
                check_inputs(input_spec, data.x, f"{name} data x")
    steps_per_epoch = num_train_batches(len(train_data), batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(train_data)} training examples")
    if early_stopping is None and validation_data is not None:
        early_stopping = EarlyStopping(patience=None, restore_best=False)
    history: list[dict[str, Any]] = []
    best_state, last_validation = None, None
    step = int(jax.device_get(state.step))  # the state arrives as one host/device copy
    state = parallel.put_state(state)
    rows = parallel.host_rows(batch_size)
    train_seconds = 0.0
    for epoch in range(1, num_epochs + 1):
        epoch_start = time.perf_counter()
        window, epoch_sums = None, None
        in_flight: collections.deque = collections.deque()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{num_epochs}", disable=not progress,
                   leave=True, dynamic_ncols=True)
        for i, batch in enumerate(prefetch(train_data.train_batches(batch_size, seed, epoch, rows=rows), parallel.put_batch)):
            state, batch_metrics = train_step(state, batch)
            window = _merge_jit(window, batch_metrics) if window is not None else batch_metrics
            step += 1
            in_flight.append(batch_metrics)
            if len(in_flight) > MAX_STEPS_IN_FLIGHT:
                jax.block_until_ready(in_flight.popleft())
            if (i + 1) % log_every == 0 or i + 1 == steps_per_epoch:
                host = parallel.to_host(window)
                epoch_sums = host if epoch_sums is None else jax.tree.map(np.add, epoch_sums, host)
                in_flight.clear()
                values = host.compute()
                lr = float(jax.device_get(schedule(step - 1))) if schedule is not None else None
                _check_finite(values["loss"], step, epoch, lr)
                bar.set_postfix({k: f"{values[k]:.4f}" for k in SHOWN_METRICS if k in values})
                log.write({"kind": "train", "epoch": epoch, "step": step, **_scalars(values),
                           **({"learning_rate": lr} if lr is not None else {})})
                window = None
            bar.update(1)
        bar.close()
        train_seconds += time.perf_counter() - epoch_start
        row: dict[str, Any] = {"epoch": epoch, "step": step}
        row.update({f"train_{k}": v for k, v in _scalars(epoch_sums.compute()).items()})
        if validation_data is not None:
            last_validation = _scalars(evaluate(state, eval_step, validation_data, eval_batch_size, parallel))
            row.update({f"val_{k}": v for k, v in last_validation.items()})
        row["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append(row)
        log.write({"kind": "epoch", **row})
        message = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k.endswith(SHOWN_METRICS))
        if progress:
            tqdm.write(f"epoch {epoch}: {message}  ({row['epoch_seconds']:.1f}s)")
        stop = False
        if early_stopping is not None:
            if early_stopping.update(epoch, row) and early_stopping.restore_best:
                best_state = jax.tree.map(lambda a: a.copy(), state)
            stop = early_stopping.should_stop
        for callback in callbacks:
            callback(epoch, row, state)
        if writes:
            plots.plot_learning_curves(history, workdir / "learning_curves.png",
                                       early_stopping.best_epoch if early_stopping else None)
        if stop:
            if progress:
                tqdm.write(f"early stopping after epoch {epoch}: {early_stopping.monitor} has not improved for "
                           f"{early_stopping.patience} epochs (best {early_stopping.best_value:.4f} at epoch {early_stopping.best_epoch})")
            break
    if best_state is not None:
        state = best_state
    summary: dict[str, Any] = {
        "epochs_run": len(history),
        "best_epoch": early_stopping.best_epoch if early_stopping else None,
        "restored_best": best_state is not None,
        "steps": int(parallel.to_host(parallel.get_state(state).step)),
        "train_seconds": train_seconds,
    }
    if validation_data is not None:
        # The last epoch's evaluation already describes the returned state unless an earlier one was restored.
        returned_last = best_state is None or early_stopping.best_epoch == history[-1]["epoch"]
        summary["validation"] = (last_validation if returned_last
                                 else _scalars(evaluate(state, eval_step, validation_data, eval_batch_size, parallel)))
    if test_data is not None:
        summary["test"] = _scalars(evaluate(state, eval_step, test_data, eval_batch_size, parallel))
    summary["wall_seconds"] = time.perf_counter() - start_time
    state = parallel.get_state(state)
    if workdir is not None:
        checkpoint.save_checkpoint(workdir / "checkpoints", state, step=summary["steps"],
                                   metrics=summary.get("validation"))
    if writes:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return FitResult(state, history, summary)


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if np.ndim(v) == 0}
