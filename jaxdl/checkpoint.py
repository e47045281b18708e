"""Orbax checkpoints of a `TrainState`.

Saves go through ``orbax.checkpoint.CheckpointManager``, which writes into a temporary directory and
renames it when complete, so a checkpoint is never left half-written. Restores check the saved structure
and shapes against the expected state first and name every differing path.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdl.tree_util import path_to_str


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter paths or shapes differ from the state it is restored into."""


def _manager(directory: str | pathlib.Path, **options: Any) -> ocp.CheckpointManager:
    # The handler is named so that metadata can be read back before a restore (for the structure check).
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=ocp.CheckpointManagerOptions(**options),
                                 item_handlers=ocp.StandardCheckpointHandler())


def save_checkpoint(directory: str | pathlib.Path, state: Any, step: int, metrics: dict[str, float] | None = None,
                    max_to_keep: int | None = 3) -> None:
    """Save ``state`` as checkpoint ``step`` under ``directory`` and wait until it is complete on disk."""
    with _manager(directory, max_to_keep=max_to_keep) as manager:
        manager.save(int(step), args=ocp.args.StandardSave(state), metrics=metrics, force=True)
        manager.wait_until_finished()


def latest_step(directory: str | pathlib.Path) -> int | None:
    """The newest complete checkpoint step under ``directory``, or None."""
    if not pathlib.Path(directory).is_dir():
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def _shapes(tree: Any) -> dict[str, tuple]:
    return {path_to_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe_mismatch(saved: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
    lines = [f"  missing in checkpoint: {p} {expected[p]}" for p in sorted(set(expected) - set(saved))]
    lines += [f"  unexpected in checkpoint: {p} {saved[p]}" for p in sorted(set(saved) - set(expected))]
    lines += [f"  shape differs at {p}: checkpoint {saved[p]} vs expected {expected[p]}"
              for p in sorted(set(saved) & set(expected)) if saved[p] != expected[p]]
    return lines


def restore_checkpoint(directory: str | pathlib.Path, target: Any, step: int | None = None) -> Any:
    """Restore checkpoint ``step`` (default: the latest) into the structure, shapes and dtypes of ``target``.

    Raises ``FileNotFoundError`` when there is no checkpoint and `CheckpointMismatchError` listing every
    differing path and shape when the checkpoint belongs to another model.
    """
    directory = pathlib.Path(directory)
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {directory}")
    with _manager(directory, create=False) as manager:
        metadata = manager.item_metadata(step)
        saved_tree = getattr(metadata, "tree", metadata)
        saved = {path_to_str(p): tuple(getattr(m, "shape", ()))
                 for p, m in jax.tree_util.tree_flatten_with_path(saved_tree)[0]}
        expected = _shapes(target)
        differences = _describe_mismatch(saved, expected)
        if differences:
            raise CheckpointMismatchError(
                f"checkpoint {directory}/{step} does not match the model being restored:\n" + "\n".join(differences)
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
