"""Orbax checkpoints of a training run: the `TrainState` plus the loop's position, kept latest-N and best-N.

Every checkpoint is one step directory with two items: ``state`` (the `TrainState` pytree, written by
Orbax's ``StandardCheckpointHandler``, sharded arrays included) and ``loop`` (JSON: where the loop stood,
early-stopping state, history, and a fingerprint of every array). Orbax writes a step into a temporary directory
and renames it when complete, so a save killed half-way leaves no step behind; the checksums catch what
the rename cannot (a file truncated or overwritten afterwards), and `Checkpointer.restore` then falls back
to the newest checkpoint that verifies, with a warning. Saves are asynchronous: `Checkpointer.save`
returns once the arrays are copied off the devices; a failed background write is raised by the next
`save`, `check` or `close` as `CheckpointSaveError`, never swallowed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from jaxdl.checkpoint.errors import CheckpointMismatchError, CheckpointSaveError, CorruptCheckpointError
from jaxdl.checkpoint.fingerprints import checksums, fingerprints
from jaxdl.checkpoint.policy import CheckpointPolicy, PinnedSteps
from jaxdl.checkpoint.quiet import one_line, quiet_stale_callbacks
from jaxdl.checkpoint.structure import absent_empty_fields, abstract_state, describe_mismatch, dtypes_by_path, shapes_by_path

STATE, LOOP = "state", "loop"


class Checkpointer:
    """Saves and restores one run's checkpoints under ``directory`` (see the module docstring).

    Use as a context manager, or call `close`, so the last asynchronous save is waited for and checked.
    """

    def __init__(self, directory: str | pathlib.Path, policy: CheckpointPolicy = CheckpointPolicy()) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.policy = policy
        self.pinned = PinnedSteps()
        keep: list[Any] = [policies.LatestN(n=policy.keep_latest), self.pinned]
        if policy.keep_best and policy.best_metric:
            # BestN sorts (descending when `reverse`) and keeps the last n.
            keep.append(policies.BestN(get_metric_fn=self._metric, reverse=policy.minimize, n=policy.keep_best,
                                       keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policies.AnyPreservationPolicy(keep),
            enable_async_checkpointing=policy.asynchronous,
            cleanup_tmp_directories=True,  # what a killed save left behind
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE: ocp.StandardCheckpointHandler(), LOOP: ocp.JsonCheckpointHandler()})

    def _metric(self, metrics: dict[str, float]) -> float:
        if self.policy.best_metric == "auto":  # accuracy when logged, else loss negated: higher is better either way
            value = metrics.get("val_accuracy", -metrics["val_loss"] if "val_loss" in metrics else None)
            return float(value) if value is not None and np.isfinite(value) else -np.inf
        value = metrics.get(self.policy.best_metric)
        # A checkpoint without the metric (or with NaN) ranks last whichever way "best" points.
        if value is None or not np.isfinite(value):
            return np.inf if self.policy.minimize else -np.inf
        return float(value)

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def steps(self) -> list[int]:
        """The complete checkpoints' steps, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, loop: dict[str, Any] | None = None,
             metrics: dict[str, float] | None = None) -> None:
        """Start saving ``state`` (one logical copy, as `Parallel.get_state` returns it) and the JSON-able
        ``loop`` position as checkpoint ``step``; ``metrics`` rank it for best-N. Returns before the files are
        written; raises `CheckpointSaveError` if an earlier save failed."""
        self.check()
        loop = dict(loop or {}, fingerprints=fingerprints(state))
        metrics = {k: float(v) for k, v in (metrics or {}).items() if np.ndim(v) == 0} or None
        try:
            self._manager.save(int(step), args=ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                                                    LOOP: ocp.args.JsonSave(loop)}),
                               metrics=metrics, force=True)
        except Exception as exc:
            raise CheckpointSaveError(f"saving checkpoint step {step} under {self.directory} failed: {exc}") from exc

    def check(self) -> None:
        """Raise `CheckpointSaveError` if a finished background save failed."""
        try:
            self._manager.check_for_errors()
        except Exception as exc:
            raise CheckpointSaveError(f"an asynchronous checkpoint save under {self.directory} failed: {exc}") from exc

    def wait(self) -> None:
        """Block until the running save is on disk; raise `CheckpointSaveError` if it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as exc:
            raise CheckpointSaveError(f"an asynchronous checkpoint save under {self.directory} failed: {exc}") from exc
        self.check()

    def close(self) -> None:
        """Wait for the last save (raising its failure) and release the manager's threads."""
        try:
            self.wait()
        finally:
            self._manager.close()

    def close_after_error(self) -> None:
        """`close` while another error is propagating: a failed save is warned about, not raised over it."""
        try:
            self.close()
        except CheckpointSaveError as exc:
            warnings.warn(str(exc), stacklevel=2)

    def saved_tree(self, step: int) -> Any:
        """Checkpoint ``step``'s state as a tree of array metadata (shape, dtype): no arrays are loaded."""
        metadata = self._manager.item_metadata(step)[STATE]
        return getattr(metadata, "tree", metadata)

    def check_structure(self, step: int, target: Any) -> None:
        """Raise `CheckpointMismatchError` naming every differing path and shape if checkpoint ``step`` does
        not fit ``target`` (a state pytree or its abstract version)."""
        saved = self.saved_tree(step)
        differences = describe_mismatch(shapes_by_path(saved), shapes_by_path(target), dtypes_by_path(saved), dtypes_by_path(target))
        if differences:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory}/{step} does not match the model being restored (another model or "
                "another configuration?):\n" + "\n".join(differences))

    def restore_step(self, step: int, target: Any, shardings: Any = None) -> tuple[Any, dict[str, Any]]:
        """Checkpoint ``step`` as ``(state, loop)``, the state in ``target``'s structure and dtypes (on
        ``shardings`` if given), verified against its checksums (`CorruptCheckpointError` if not)."""
        self.check_structure(step, target)
        absent = absent_empty_fields(self.saved_tree(step), target)
        if absent:
            # A field added to the state since this checkpoint was written (e.g. TrainState.average) and unused
            # here (None): read the fields the checkpoint has, keep the target's empty ones.
            kept = {f.name: getattr(target, f.name) for f in dataclasses.fields(target) if f.name not in absent}
            kept_shardings = None if shardings is None else {k: getattr(shardings, k) for k in kept}
            restored = self._restore_items(step, kept, kept_shardings)
            restored[STATE] = dataclasses.replace(target, **restored[STATE])
        else:
            restored = self._restore_items(step, target, shardings)
        state, loop = restored[STATE], dict(restored[LOOP] or {})
        self._verify(step, state, loop)
        return state, loop

    def _verify(self, step: int, tree: Any, loop: dict[str, Any], partial: bool = False) -> None:
        """Check ``tree`` (the step's state, or with ``partial`` a part of it) against the fingerprints in the
        step's ``loop`` item, which loses them; raise `CorruptCheckpointError` on any difference."""
        legacy = "fingerprints" not in loop  # written by an earlier jaxdl: CRC32 of host copies
        expected = loop.pop("checksums" if legacy else "fingerprints", None)
        if expected is None:
            raise CorruptCheckpointError(f"checkpoint {self.directory}/{step} has no checksums: its loop item is damaged")
        got = checksums(tree) if legacy else fingerprints(tree)
        bad = sorted(p for p in got if got[p] != expected.get(p, None if partial else got[p]))
        if bad:
            raise CorruptCheckpointError(f"checkpoint {self.directory}/{step} fails its checksum at {bad[:5]}")

    def _restore_items(self, step: int, target: Any, shardings: Any) -> dict[str, Any]:
        return dict(self._manager.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state(target, shardings)), LOOP: ocp.args.JsonRestore()})))

    def ranked_steps(self) -> list[int]:
        """The complete checkpoints, best first by the policy's ``best_metric`` as saved with each step (ties and
        steps without the metric: newest first); newest first when the policy ranks nothing."""
        steps = self.steps()[::-1]
        if not self.policy.best_metric:
            return steps
        sign = 1.0 if self.policy.minimize else -1.0

        def score(step: int) -> float:
            try:
                metrics = self._manager.metrics(step)
            except Exception:  # unreadable metrics: ranked last, the restore itself decides
                metrics = None
            value = self._metric(metrics) if metrics else np.nan
            return sign * value if np.isfinite(value) else np.inf

        return sorted(steps, key=score)  # stable: newest first among equals

    def set_aside(self, step: int) -> pathlib.Path:
        """Move damaged checkpoint ``step`` to ``damaged/`` beside the steps (nothing is deleted; the step can be
        saved again) and return where it went. In a multi-host run process 0 moves it and all wait."""
        destination = self.directory / "damaged" / str(step)
        if jax.process_index() == 0:
            destination.parent.mkdir(exist_ok=True)
            suffix = 1
            while destination.exists():
                destination, suffix = self.directory / "damaged" / f"{step}.{suffix}", suffix + 1
            os.replace(self.directory / str(step), destination)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxdl set aside checkpoint {step}")
        self._manager.reload()
        return destination

    def restore(self, target: Any, step: int | None = None, shardings: Any = None, *, fallback: bool = False,
                set_aside: bool = False) -> tuple[Any, dict[str, Any], int]:
        """The newest checkpoint (or ``step``) that reads back and verifies, as ``(state, loop, step)``.

        A damaged checkpoint gets one warning line naming it and the fault, and the next candidate is tried: the
        next older step when ``step`` is None; with a ``step`` and ``fallback`` the others best first
        (`ranked_steps`). ``set_aside`` moves each damaged step to ``damaged/`` (`set_aside`), so a resumed run
        can save that step again. A checkpoint of another model raises `CheckpointMismatchError` at once (falling
        back would hide the mistake).
        """
        abstract_state(target, shardings)  # raises on an impossible layout before any checkpoint is blamed
        (state, loop), step = self._first_good(lambda s: self.restore_step(s, target, shardings), step, fallback, set_aside)
        return state, loop, step

    def restore_subtree(self, select: Callable[[dict], dict] | str = "params", step: int | None = None, *,
                        fallback: bool = False) -> Any:
        """Only part of a checkpoint's state (default its ``params``; a top-level key, or a function returning a nested
        dict of the saved tree's wanted entries), read without loading the rest and verified against the step's
        fingerprints: for a backbone, inference or another model's initialisation. Damaged steps are skipped as
        `restore` skips them."""
        return self._first_good(lambda s: self._read_subtree(s, select), step, fallback, False)[0]

    def _read_subtree(self, step: int, select: Callable[[dict], dict] | str) -> Any:
        tree = self.saved_tree(step)
        if isinstance(select, str) and select not in tree:
            raise KeyError(f"checkpoint {self.directory}/{step} has no {select!r}; it has {sorted(tree)}")
        subset = select(tree) if callable(select) else {select: tree[select]}
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), subset)
        # Orbax's PyTree handler reads just the listed arrays of the step's state item.
        restored = ocp.PyTreeCheckpointer().restore(
            self.directory / str(step) / STATE,
            args=ocp.args.PyTreeRestore(item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                        partial_restore=True))
        loop = dict(self._manager.restore(step, args=ocp.args.Composite(**{LOOP: ocp.args.JsonRestore()}))[LOOP] or {})
        self._verify(step, restored, loop, partial=True)
        return restored if callable(select) else restored[select]

    def _first_good(self, read: Callable[[int], Any], step: int | None, fallback: bool, set_aside: bool) -> tuple[Any, int]:
        """``(read(s), s)`` for the first candidate step ``s`` that reads back and verifies (see `restore`)."""
        if step is None:
            candidates = self.steps()[::-1]
        else:
            candidates = [step] + ([s for s in self.ranked_steps() if s != step] if fallback else [])
        if not candidates:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        errors = []
        for candidate in candidates:
            if candidate not in self.steps():
                errors.append(f"step {candidate}: missing")
                warnings.warn(f"checkpoint {self.directory}/{candidate} does not exist (deleted or set aside)", stacklevel=3)
                continue
            try:
                with quiet_stale_callbacks():
                    result = read(candidate)
            except (CheckpointMismatchError, KeyError, KeyboardInterrupt):
                raise
            except Exception as exc:  # truncated files, bad JSON, failed fingerprints: try the next candidate
                reason = one_line(exc)
                errors.append(f"step {candidate}: {reason}")
                where = f"moved to {self.set_aside(candidate)}" if set_aside else "skipped"
                warnings.warn(f"checkpoint {self.directory}/{candidate} is damaged and was {where} ({reason})", stacklevel=3)
                continue
            if errors:
                warnings.warn(f"restored the previous good checkpoint, step {candidate}", stacklevel=3)
            return result, candidate
        raise CorruptCheckpointError(f"no readable checkpoint under {self.directory}:\n  " + "\n  ".join(errors))
