"""The training loop: a short kernel of compiled steps and evaluations, and `fit`, which assembles its hooks.

`run_loop` runs epochs of ``train_step`` and, after each, ``eval_step`` over the validation data; everything
else is a `jaxdl.training.hooks.Hook` on it: the metrics log, the progress bar, early stopping, checkpoints,
and the caller's figures and TensorBoard. `fit` checks its arguments, resumes from a work directory's newest
good checkpoint, builds the built-in hooks in their order and runs the kernel.

The kernel is thin on purpose: all numerical work is in the compiled steps. The host waits for the device
only at logging intervals (or a step a hook asks to see), and never lets more than `MAX_STEPS_IN_FLIGHT`
steps queue up (a long queue of collective-bearing steps can deadlock multi-device CPU runs, and it buys
nothing). The loss is checked for NaN/inf at every sync, before any hook sees it: a NaN state is never saved.

A checkpoint holds the state and the loop's position (epoch, batch, early-stopping state, history, the
epoch's partial training metrics). Batches are a function of ``(seed, epoch, index)`` and dropout keys of
``(state.rng, step)``, so a run resumed from any checkpoint takes exactly the steps the uninterrupted run
would have taken: the final parameters are bitwise equal.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import pathlib
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxdl.checkpoint import Checkpointer, CheckpointPolicy
from jaxdl.data.pipeline import ArrayDataset, num_train_batches
from jaxdl.data.prefetch import prefetch
from jaxdl.distributed.parallel import Parallel
from jaxdl.training.early_stopping import AUTO, EarlyStopping
from jaxdl.training.evaluation import JIT, evaluate, merge_metrics_jit, scalar_metrics
from jaxdl.training.hooks import EarlyStop, Hook, Loop, MetricsLog, ProgressBar, SaveCheckpoints, Throughput, as_hook
from jaxdl.training.preemption import Preempted, PreemptionGuard, preempt
from jaxdl.training.resume import Position, from_json_leaves, resume_run
from jaxdl.training.state import InputSpec, TrainState, check_inputs
from jaxdl.training.step_norms import LogWindows
from jaxdl.util.atomic_file import write_text_atomically
from jaxdl.util.counts import require_counts
from jaxdl.util.workdir_lock import hold_workdir

# Measured on 2 cores with 8 host devices and one competing busy process: 16 steps in flight hung the pmap and
# mesh steps' all-reduce in 5 of 5 runs, 8 passed 2 of 2, 4 passed 6 of 6. Four queued steps still hide
# the host's dispatch time.
MAX_STEPS_IN_FLIGHT = 4


@dataclasses.dataclass
class FitResult:
    """What `fit` returns: the final (or best) ``state``, per-epoch ``history`` and the ``summary`` dict."""

    state: TrainState
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def _check_finite(value: float, step: int, epoch: int, learning_rate: float | None) -> None:
    if not math.isfinite(value):
        lr = f" (learning rate {learning_rate:.3g})" if learning_rate is not None else ""
        raise FloatingPointError(
            f"training loss became {value} at step {step}, epoch {epoch}{lr}. Nothing was saved from this state: "
            "the last good checkpoint is untouched. Lower optimizer.learning_rate, set optimizer.clip_norm, "
            "or check the inputs for NaN/inf."
        )


def run_loop(loop: Loop, hooks: Sequence[Hook], *, train_step: Callable, eval_step: Callable,
             train_data: ArrayDataset, validation_data: ArrayDataset | None, eval_batch_size: int, log_every: int,
             schedule: Callable[[int], Any] | None = None) -> dict[str, float] | None:
    """Run epochs ``loop.epoch`` to ``loop.num_epochs`` (from batch ``loop.position.batch`` of the first when it
    resumes mid-epoch) until a hook stops the loop, calling ``hooks`` as `jaxdl.training.hooks.Hook` describes.

    ``loop.state`` must already be placed by ``loop.parallel``; it is replaced by each step's output. Returns the
    last epoch's validation metrics (None without validation data).
    """
    position, parallel = loop.position, loop.parallel
    windows = LogWindows(log_every, loop.steps_per_epoch)  # the steps that measure their norms end these too
    rows = parallel.host_rows(loop.batch_size)
    last_validation = None
    for hook in hooks:
        hook.on_fit_start(loop)
    try:
        while loop.epoch <= loop.num_epochs and not loop.stopping:
            epoch_start = time.perf_counter()
            loop.batch = position.batch if loop.epoch == position.epoch else 0
            resumed_sums = position.epoch_sums if loop.batch else None
            loop.epoch_sums, window = None, None
            in_flight: collections.deque = collections.deque()
            for hook in hooks:
                hook.on_epoch_start(loop)
            batches = train_data.train_batches(loop.batch_size, loop.seed, loop.epoch, start=loop.batch, rows=rows)
            for batch in prefetch(batches, parallel.put_batch):
                loop.state, batch_metrics = train_step(loop.state, batch)
                window = merge_metrics_jit(window, batch_metrics) if window is not None else batch_metrics
                loop.step += 1
                loop.batch += 1
                in_flight.append(batch_metrics)
                if len(in_flight) > MAX_STEPS_IN_FLIGHT:
                    jax.block_until_ready(in_flight.popleft())
                wanted = [hook.wants_metrics(loop) for hook in hooks]  # every hook is asked: none is skipped
                stop_signal = loop.preemption.requested(loop.step) if loop.preemption is not None else None
                if windows.closes(loop.batch) or any(wanted) or stop_signal:
                    host = parallel.to_host(window)
                    if resumed_sums is not None:
                        loop.epoch_sums, resumed_sums = from_json_leaves(resumed_sums, host), None
                    loop.epoch_sums = host if loop.epoch_sums is None else jax.tree.map(np.add, loop.epoch_sums, host)
                    in_flight.clear()
                    values = host.compute()
                    lr = float(jax.device_get(schedule(loop.step - 1))) if schedule is not None else None
                    _check_finite(values["loss"], loop.step, loop.epoch, lr)  # before any hook can save the state
                    record = {"kind": "train", "epoch": loop.epoch, "step": loop.step, **scalar_metrics(values),
                              **({"learning_rate": lr} if lr is not None else {})}
                    for hook in hooks:
                        hook.on_metrics(loop, record)
                    window = None
                for hook in hooks:
                    hook.on_step(loop)
                if stop_signal and loop.batch < loop.steps_per_epoch:
                    position.train_seconds += time.perf_counter() - epoch_start
                    preempt(loop, hooks, stop_signal, loop.record(loop.epoch, loop.batch, loop.epoch_sums))
            position.train_seconds += time.perf_counter() - epoch_start
            row: dict[str, Any] = {"epoch": loop.epoch, "step": loop.step}
            row.update({f"train_{k}": v for k, v in scalar_metrics(loop.epoch_sums.compute()).items()})
            if validation_data is not None:
                last_validation = scalar_metrics(evaluate(loop.state, eval_step, validation_data, eval_batch_size, parallel))
                row.update({f"val_{k}": v for k, v in last_validation.items()})
            row["epoch_seconds"] = time.perf_counter() - epoch_start
            loop.history.append(row)
            for hook in hooks:
                hook.on_epoch_end(loop, row)
            loop.epoch += 1
            # A signal during the epoch's last step or its evaluation stops the run here, at the epoch's end.
            stop_signal = loop.preemption.requested(loop.step) if loop.preemption is not None else None
            if stop_signal and (loop.epoch <= loop.num_epochs and not loop.stopping):
                preempt(loop, hooks, stop_signal, loop.record(loop.epoch, 0, None))
    except BaseException as error:
        for hook in hooks:
            try:
                hook.on_error(loop, error)
            except Exception as hook_error:  # the loop's error is the one to see; a hook's is a footnote
                warnings.warn(f"{type(hook).__name__}.on_error failed: {hook_error}", stacklevel=2)
        raise
    for hook in hooks:
        hook.on_fit_end(loop)
    return last_validation


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
    hooks: Sequence[Hook | Callable[[int, dict[str, Any], TrainState], None]] = (),
    checkpoint_policy: CheckpointPolicy | None = None,
    resume: bool | None = None,
) -> FitResult:
    """Train ``state`` for ``num_epochs`` epochs with compiled ``train_step``/``eval_step``.

    Each epoch reshuffles ``train_data`` from ``(seed, epoch)``, shows a progress bar with live loss and
    accuracy (refreshed every ``log_every`` steps, the only times the host waits for the device), then
    evaluates on ``validation_data``. ``early_stopping`` stops on any logged metric and, with
    ``restore_best``, returns the best epoch's state. With a ``workdir`` the loop appends to
    ``metrics.jsonl``, keeps Orbax checkpoints in ``checkpoints/`` as
    ``checkpoint_policy`` says (default: each epoch, latest 2 and the early-stopping best) and writes
    ``summary.json`` (validation and test metrics, wall time, ``checkpoint_step`` of the returned state).
    ``resume`` None continues from the workdir's newest good checkpoint when there is one, True requires
    one, False refuses a workdir that has checkpoints (it would mix two runs). ``hooks`` (each a
    `jaxdl.training.hooks.Hook`, or a plain ``(epoch, row, state)`` function called after each epoch) run
    after the built-in log, progress bar and early stopping, and before the checkpoint is saved. With a
    ``workdir``, a SIGTERM or SIGINT stops the run after its current step with that step saved, ``summary.json``
    recording the stop, and raises `Preempted` (a second signal ends the process at once).

    ``parallel`` (from `make_parallel`, and the one that compiled the steps) places the state and the
    batches on the devices; the returned state is the single logical copy. In a multi-host run every process
    calls `fit`; only process 0 writes logs, curves and summaries, and all take part in the checkpoint.
    The compiled step donates its input state (no second copy of the parameters and optimizer state lives
    on the device), so ``state`` is consumed: to train the same initial state twice, pass
    ``jax.tree.map(jnp.copy, state)``.
    """
    start_time = time.perf_counter()
    require_counts({"batch_size": batch_size, "num_epochs": num_epochs, "eval_batch_size": eval_batch_size,
                    "log_every": log_every})
    workdir = pathlib.Path(workdir) if workdir is not None else None
    writes = workdir is not None and jax.process_index() == 0
    progress = progress and jax.process_index() == 0
    parallel.check_batch_size(batch_size)
    if input_spec is not None:
        for name, data in (("train", train_data), ("validation", validation_data), ("test", test_data)):
            if data is not None:
                check_inputs(input_spec, data.x, f"{name} data x")
    steps_per_epoch = num_train_batches(len(train_data), batch_size)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(train_data)} training examples")
    user_hooks = [as_hook(hook) for hook in hooks]  # refuse a wrong hook before anything runs
    if early_stopping is None and validation_data is not None:
        early_stopping = EarlyStopping(monitor=AUTO, patience=None, restore_best=False)
    with contextlib.ExitStack() as held:
        if workdir is not None:  # one writer per work directory: a second run fails here, before any change
            held.enter_context(hold_workdir(workdir, writer=jax.process_index() == 0))
        checkpointer = None
        if workdir is not None:
            if checkpoint_policy is None:
                checkpoint_policy = CheckpointPolicy(best_metric=early_stopping.monitor if early_stopping else None)
            checkpointer = Checkpointer(workdir / "checkpoints", checkpoint_policy)
        elif resume:
            raise ValueError("resume=True needs a workdir to resume from")
        position, best_state = Position(), None
        has_checkpoint = checkpointer is not None and checkpointer.latest_step() is not None
        if resume and not has_checkpoint:
            raise FileNotFoundError(f"nothing to resume: no checkpoint under {workdir}/checkpoints")
        if resume is False and has_checkpoint:
            raise ValueError(f"{workdir}/checkpoints already holds checkpoints of a run; resume it or use another workdir")
        if has_checkpoint:
            try:
                state, position, best_state = resume_run(checkpointer, state, parallel, seed, batch_size, early_stopping, workdir)
            except BaseException:
                checkpointer.close_after_error()
                raise
            if best_state is not None:  # its own buffers: the step donates the state's, which may alias a restored copy
                best_state = jax.tree.map(lambda a: a.copy(), parallel.put_state(best_state))
        loop = Loop(num_epochs=num_epochs, steps_per_epoch=steps_per_epoch, seed=seed, batch_size=batch_size,
                    parallel=parallel, workdir=workdir, early_stopping=early_stopping, progress=progress,
                    step=int(jax.device_get(state.step)),  # the state arrives as one host/device copy
                    state=parallel.put_state(state), position=position, epoch=position.epoch, best_state=best_state)
        if has_checkpoint:
            loop.say(f"resuming from step {loop.step}: epoch {position.epoch}, batch {position.batch}/{steps_per_epoch}")
        # A caller's `Throughput` (its own clock or rate) takes the built-in one's place at the front.
        throughput = next((h for h in user_hooks if isinstance(h, Throughput)), None) or Throughput()
        user_hooks = [h for h in user_hooks if h is not throughput]
        train_step = throughput.watch(train_step, parallel.data_parallel_size if parallel.strategy == "pmap" else 1)
        all_hooks: list[Hook] = [throughput, *([MetricsLog(workdir / "metrics.jsonl")] if writes else [])]
        all_hooks.append(ProgressBar())
        if early_stopping is not None:
            all_hooks.append(EarlyStop(early_stopping))
        all_hooks += user_hooks
        if checkpointer is not None:
            all_hooks.append(SaveCheckpoints(checkpointer))  # last: an epoch's checkpoint holds every hook's verdict
        # With checkpoints, SIGTERM/SIGINT stop the run after its current step, saved (see `PreemptionGuard`).
        guard = PreemptionGuard() if checkpointer is not None else contextlib.nullcontext()
        try:
            with guard:
                loop.preemption = guard if checkpointer is not None else None
                last_validation = run_loop(loop, all_hooks, train_step=train_step, eval_step=eval_step,
                                           train_data=train_data, validation_data=validation_data,
                                           eval_batch_size=eval_batch_size, log_every=log_every, schedule=schedule)
        except Preempted as stop:
            if writes:
                write_text_atomically(workdir / "summary.json", json.dumps(
                    {"preempted": stop.record(), "checkpoint_step": stop.step, "epochs_run": len(loop.history),
                     "steps": stop.step, "train_seconds": position.train_seconds}, indent=2))
            raise
        state, best_state, history = loop.state, loop.best_state, loop.history
        if best_state is not None:
            state = best_state
        returned_step = int(parallel.to_host(parallel.get_state(state).step))
        summary: dict[str, Any] = {
            "epochs_run": len(history),
            "best_epoch": early_stopping.best_epoch if early_stopping else None,
            "restored_best": best_state is not None,
            "steps": returned_step,
            "train_seconds": position.train_seconds,
        }
        if workdir is not None:
            summary["checkpoint_step"] = returned_step
        if validation_data is not None:
            # The last epoch's evaluation already describes the returned state unless an earlier one was restored.
            returned_last = best_state is None or early_stopping.best_epoch == history[-1]["epoch"]
            if not returned_last or last_validation is None:
                last_validation = scalar_metrics(evaluate(state, eval_step, validation_data, eval_batch_size, parallel))
            summary["validation"] = last_validation
        if test_data is not None:
            summary["test"] = scalar_metrics(evaluate(state, eval_step, test_data, eval_batch_size, parallel))
        summary["wall_seconds"] = time.perf_counter() - start_time
        state = parallel.get_state(state)
        if writes:
            write_text_atomically(workdir / "summary.json", json.dumps(summary, indent=2))
        return FitResult(state, history, summary)


