"""One-call helpers over a checkpoint directory: save and wait, the newest step, restore, params only."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from jaxdl.checkpoint.manager import Checkpointer
from jaxdl.checkpoint.policy import CheckpointPolicy


def returned_step(workdir: str | pathlib.Path) -> int | None:
    """The checkpoint step of the state a finished `jaxdl train` run returned (its ``summary.json``'s
    ``checkpoint_step``, e.g. the early-stopping best); None (the newest) when the run wrote no summary."""
    summary = pathlib.Path(workdir) / "summary.json"
    return json.loads(summary.read_text()).get("checkpoint_step") if summary.is_file() else None


def save_checkpoint(directory: str | pathlib.Path, state: Any, step: int, metrics: dict[str, float] | None = None,
                    loop: dict[str, Any] | None = None) -> None:
    """Save ``state`` as checkpoint ``step`` under ``directory`` and wait until it is complete on disk."""
    with Checkpointer(directory, CheckpointPolicy(asynchronous=False, keep_latest=3)) as checkpointer:
        checkpointer.save(step, state, loop, metrics)


def latest_step(directory: str | pathlib.Path) -> int | None:
    """The newest complete checkpoint step under ``directory``, or None."""
    if not pathlib.Path(directory).is_dir():
        return None
    with Checkpointer(directory) as checkpointer:
        return checkpointer.latest_step()


def restore_checkpoint(directory: str | pathlib.Path, target: Any, step: int | None = None, shardings: Any = None) -> Any:
    """Restore checkpoint ``step`` (default: the newest good one) into the structure, shapes and dtypes of ``target``.

    Raises ``FileNotFoundError`` when there is no checkpoint and `CheckpointMismatchError` listing every
    differing path and shape when the checkpoint belongs to another model.
    """
    if not pathlib.Path(directory).is_dir():
        raise FileNotFoundError(f"no checkpoint under {directory}")
    with Checkpointer(directory) as checkpointer:
        return checkpointer.restore(target, step, shardings)[0]


def restore_params(directory: str | pathlib.Path, step: int | None = None) -> Any:
    """The ``params`` subtree of checkpoint ``step`` (default the newest) as arrays, without a target."""
    if not pathlib.Path(directory).is_dir():
        raise FileNotFoundError(f"no checkpoint under {directory}")
    with Checkpointer(directory) as checkpointer:
        return checkpointer.restore_subtree("params", step)
