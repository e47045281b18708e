"""Where a run stands, as a checkpoint's ``loop`` item holds it, and resuming from it: the state, the epoch and
batch to continue from, the early-stopping state, the best epoch's state, and a metrics log cut back to the
checkpoint (the resumed run writes the later records again)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import warnings
from typing import Any

import jax
import numpy as np

from jaxdl.checkpoint import Checkpointer, CorruptCheckpointError
from jaxdl.distributed.parallel import Parallel
from jaxdl.training.early_stopping import AUTO, EarlyStopping
from jaxdl.training.state import TrainState
from jaxdl.util.atomic_file import write_text_atomically


def to_json_leaves(tree: Any) -> list[list[Any]] | None:
    """Host metric sums as JSON (dtype, values), rebuilt by `from_json_leaves` into the same structure."""
    return None if tree is None else [[str(a.dtype), np.asarray(a).tolist()] for a in jax.tree.leaves(tree)]


def from_json_leaves(leaves: list[list[Any]], like: Any) -> Any:
    """The tree `to_json_leaves` wrote, rebuilt in the structure of ``like``."""
    return jax.tree.unflatten(jax.tree.structure(like), [np.asarray(v, dtype=d) for d, v in leaves])


def truncate_log(path: pathlib.Path, step: int) -> None:
    """Drop log records written after checkpoint ``step`` (the resumed run writes them again)."""
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
        write_text_atomically(path, "".join(line + "\n" for line in lines))


@dataclasses.dataclass
class Position:
    """Where a (possibly resumed) run stands: what the ``loop`` item of a checkpoint holds."""

    epoch: int = 1            # the epoch to run next (or being run)
    batch: int = 0            # batches of ``epoch`` already done
    history: list = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0
    epoch_sums: list | None = None   # this epoch's partial training metrics (JSON leaves)
    best_step: int | None = None     # the checkpoint of the early-stopping best epoch
    stopped_early: bool = False


def _best_surviving(checkpointer: Checkpointer, state: TrainState, shardings: Any, position: Position,
                    early_stopping: EarlyStopping) -> Any:
    """The best epoch's state from its checkpoint, or, when that step is damaged or gone, from the best epoch whose
    checkpoint survives (early stopping's record and the position move to it); None when no epoch's does."""
    try:
        return checkpointer.restore(state, position.best_step, shardings, set_aside=True)[0]
    except (CorruptCheckpointError, FileNotFoundError):
        lost = position.best_step
    sign = -1.0 if early_stopping.mode == "max" else 1.0
    rows = sorted((r for r in position.history if r.get("step") in checkpointer.steps()
                   and np.isfinite(r.get(early_stopping.monitor, np.nan))),
                  key=lambda r: (sign * r[early_stopping.monitor], r["epoch"]))
    for row in rows:
        try:
            best = checkpointer.restore(state, row["step"], shardings, set_aside=True)[0]
        except (CorruptCheckpointError, FileNotFoundError):
            continue
        warnings.warn(f"the best epoch's checkpoint (step {lost}) is lost; the best surviving one, epoch {row['epoch']} "
                      f"(step {row['step']}, {early_stopping.monitor}={row[early_stopping.monitor]:.6g}), takes its place",
                      stacklevel=3)
        early_stopping.best_value, early_stopping.best_epoch = float(row[early_stopping.monitor]), row["epoch"]
        position.best_step = row["step"]
        return best
    warnings.warn(f"the best epoch's checkpoint (step {lost}) is lost and no other epoch's survives: the best is "
                  "tracked afresh from here", stacklevel=3)
    early_stopping.best_value = early_stopping.best_epoch = position.best_step = None
    return None


def resume_run(checkpointer: Checkpointer, state: TrainState, parallel: Parallel, seed: int, batch_size: int,
            early_stopping: EarlyStopping | None, workdir: pathlib.Path | None) -> tuple[TrainState, Position, Any]:
    """Restore the newest good checkpoint: the state (onto ``parallel``'s layout), the position, the early-stopping
    state, and the best epoch's state when early stopping restores it."""
    shardings = parallel.state_shardings(state) if parallel.strategy == "mesh" else None
    restored, loop, step = checkpointer.restore(state, shardings=shardings, set_aside=True)
    for name, value in (("seed", seed), ("batch_size", batch_size)):
        if loop.get(name) != value:
            raise ValueError(f"cannot resume from {checkpointer.directory}/{step}: it was trained with {name}="
                             f"{loop.get(name)}, this run has {name}={value}; use another workdir or the same {name}")
    if early_stopping is not None and loop.get("early_stopping"):
        saved = loop["early_stopping"]
        if early_stopping.monitor == AUTO:  # the implicit tracker takes the monitor its first run chose
            early_stopping.adopt(saved["monitor"])
        if saved["monitor"] != early_stopping.monitor:
            raise ValueError(f"cannot resume: the run monitored {saved['monitor']!r} for early stopping, this run "
                             f"monitors {early_stopping.monitor!r}")
        for field in ("best_value", "best_epoch", "bad_epochs"):
            setattr(early_stopping, field, saved[field])
    position = Position(**{f.name: loop[f.name] for f in dataclasses.fields(Position) if f.name in loop})
    best_state = None
    if early_stopping is not None and position.best_step is not None:
        if position.best_step == step:
            best_state = restored
        else:
            best_state = _best_surviving(checkpointer, state, shardings, position, early_stopping)
        if position.best_step is not None:
            checkpointer.pinned.steps = {position.best_step}
        if not early_stopping.restore_best:
            best_state = None
    if workdir is not None and jax.process_index() == 0:
        truncate_log(workdir / "metrics.jsonl", step)
    return restored, position, best_state
