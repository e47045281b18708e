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
import json
import pathlib
import warnings
import zlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxdl.tree_util import path_to_str

STATE, LOOP = "state", "loop"


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameter paths or shapes differ from the state it is restored into."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read back."""


class CheckpointSaveError(CheckpointError):
    """An (asynchronous) checkpoint save failed; the previous checkpoints are intact."""


class CorruptCheckpointError(CheckpointError):
    """No checkpoint under a directory could be read back and verified."""


@dataclasses.dataclass(frozen=True)
class CheckpointPolicy:
    """When to save and what to keep.

    ``every_epochs`` (0: never at epoch ends) and ``every_steps`` (0: never mid-epoch) say when;
    ``keep_latest`` newest and ``keep_best`` best by ``best_metric`` (an epoch-row name such as
    ``"val_accuracy"``, or ``"auto"``: accuracy when logged, else loss; ``mode`` "min", "max" or "auto": min
    for losses and errors) are kept, plus whatever
    a caller pins (the early-stopping best). ``asynchronous`` writes in a background thread.
    """

    every_epochs: int = 1
    every_steps: int = 0
    keep_latest: int = 2
    keep_best: int = 1
    best_metric: str | None = None
    mode: str = "auto"
    asynchronous: bool = True

    def __post_init__(self) -> None:
        for name in ("every_epochs", "every_steps", "keep_best"):
            if getattr(self, name) < 0:
                raise ValueError(f"checkpoint.{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_latest < 1:
            raise ValueError(f"checkpoint.keep_latest must be >= 1 (resuming needs the newest), got {self.keep_latest}")
        if self.mode not in ("min", "max", "auto"):
            raise ValueError(f"checkpoint.mode must be 'min', 'max' or 'auto', got {self.mode!r}")

    @property
    def minimize(self) -> bool:
        """Whether smaller ``best_metric`` values are better."""
        if self.mode != "auto":
            return self.mode == "min"
        if self.best_metric == "auto":
            return False  # `Checkpointer._metric` turns a fallback loss into a score
        return any(word in (self.best_metric or "") for word in ("loss", "mae", "rmse", "error"))


@dataclasses.dataclass
class _Pinned(policies.PreservationPolicy):
    """Keeps the steps in ``steps`` (mutable: the early-stopping best moves as training goes)."""

    steps: set = dataclasses.field(default_factory=set)

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> Sequence[bool]:
        return [info.step in self.steps for info in checkpoints]


def _words(x: jax.Array) -> jax.Array:
    """``x``'s bits as a flat uint32 vector (narrower types widened, 64-bit ones split in two words)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = x.dtype.itemsize * 8
    x = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{bits}"))
    if bits == 64:
        x = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return x.astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> jax.Array:
    # Two sums mod 2**32 of every word times an odd weight of its position: a flipped bit or a changed word
    # always changes the first, and integer sums are exact in any order, so the value does not depend on the
    # device count or sharding a state is saved from or restored onto.
    rows = []
    for x in leaves:
        w = _words(x)
        i = jnp.arange(w.size, dtype=jnp.uint32)
        mixed = (w ^ (w >> 16)) * jnp.uint32(0x45D9F3B)
        rows.append(jnp.stack([jnp.sum(w * (2 * i + 1), dtype=jnp.uint32), jnp.sum(mixed ^ i, dtype=jnp.uint32)]))
    return jnp.stack(rows) if rows else jnp.zeros((0, 2), jnp.uint32)


def fingerprints(tree: Any) -> dict[str, int]:
    """A 64-bit fingerprint of every array of ``tree``, computed where the arrays live (one compiled reduction,
    no copy of the state to the host; sharded and multi-host arrays included)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = np.asarray(jax.device_get(_fingerprints([jnp.asarray(leaf) for _, leaf in flat])), np.uint64)
    return {path_to_str(path): int(hi << np.uint64(32) | lo) for (path, _), (hi, lo) in zip(flat, values)}


def checksums(tree: Any) -> dict[str, int]:
    """CRC32 of every array of ``tree`` this process can read whole: how checkpoints written before
    `fingerprints` are verified (each array is copied to the host)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            continue
        out[path_to_str(path)] = zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return out


def _absent_empty_fields(saved: Any, target: Any) -> set[str]:
    """The fields of a dataclass ``target`` that are None there and missing from the ``saved`` tree."""
    if not (dataclasses.is_dataclass(target) and isinstance(saved, dict)):
        return set()
    return {f.name for f in dataclasses.fields(target) if getattr(target, f.name) is None and f.name not in saved}


def abstract_state(target: Any, shardings: Any = None) -> Any:
    """``target``'s structure as ``jax.ShapeDtypeStruct`` leaves (restored onto ``shardings`` when given, a
    pytree of ``jax.sharding.Sharding`` like ``target``: a different device count or layout than at save time)."""
    if shardings is None:
        return jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    def leaf(x, sharding):
        try:
            sharding.shard_shape(np.shape(x))  # a layout that cannot hold the array is the caller's error, not damage
        except ValueError as exc:
            raise ValueError(f"cannot restore an array of shape {np.shape(x)} onto {sharding}: {exc}") from exc
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

    return jax.tree.map(leaf, target, shardings)


def _shapes(tree: Any) -> dict[str, tuple]:
    return {path_to_str(p): tuple(getattr(x, "shape", np.shape(x))) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _dtypes(tree: Any) -> dict[str, str]:
    return {path_to_str(p): str(np.dtype(x.dtype)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if getattr(x, "dtype", None) is not None}


def describe_mismatch(saved: dict[str, tuple], expected: dict[str, tuple], saved_dtypes: dict[str, str] | None = None,
                      expected_dtypes: dict[str, str] | None = None) -> list[str]:
    """One line per path missing on either side or whose shape (or dtype, when given) differs."""
    lines = [f"  missing in checkpoint: {p} {expected[p]}" for p in sorted(set(expected) - set(saved))]
    lines += [f"  unexpected in checkpoint: {p} {saved[p]}" for p in sorted(set(saved) - set(expected))]
    lines += [f"  shape differs at {p}: checkpoint {saved[p]} vs expected {expected[p]}"
              for p in sorted(set(saved) & set(expected)) if saved[p] != expected[p]]
    if saved_dtypes is not None and expected_dtypes is not None:
        lines += [f"  dtype differs at {p}: checkpoint {saved_dtypes[p]} vs expected {expected_dtypes[p]}"
                  for p in sorted(set(saved_dtypes) & set(expected_dtypes)) if saved_dtypes[p] != expected_dtypes[p]]
    return lines


class Checkpointer:
    """Saves and restores one run's checkpoints under ``directory`` (see the module docstring).

    Use as a context manager, or call `close`, so the last asynchronous save is waited for and checked.
    """

    def __init__(self, directory: str | pathlib.Path, policy: CheckpointPolicy = CheckpointPolicy()) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.policy = policy
        self.pinned = _Pinned()
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
        differences = describe_mismatch(_shapes(saved), _shapes(target), _dtypes(saved), _dtypes(target))
        if differences:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory}/{step} does not match the model being restored (another model or "
                "another configuration?):\n" + "\n".join(differences))

    def restore_step(self, step: int, target: Any, shardings: Any = None) -> tuple[Any, dict[str, Any]]:
        """Checkpoint ``step`` as ``(state, loop)``, the state in ``target``'s structure and dtypes (on
        ``shardings`` if given), verified against its checksums (`CorruptCheckpointError` if not)."""
        self.check_structure(step, target)
        absent = _absent_empty_fields(self.saved_tree(step), target)
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
        legacy = "fingerprints" not in loop  # written by an earlier jaxdl: CRC32 of host copies
        expected = loop.pop("checksums" if legacy else "fingerprints", None)
        if expected is None:
            raise CorruptCheckpointError(f"checkpoint {self.directory}/{step} has no checksums: its loop item is damaged")
        got = checksums(state) if legacy else fingerprints(state)
        bad = sorted(p for p in got if p in expected and got[p] != expected[p])
        if bad:
            raise CorruptCheckpointError(f"checkpoint {self.directory}/{step} fails its checksum at {bad[:5]}")
        return state, loop

    def _restore_items(self, step: int, target: Any, shardings: Any) -> dict[str, Any]:
        return dict(self._manager.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state(target, shardings)), LOOP: ocp.args.JsonRestore()})))

    def restore(self, target: Any, step: int | None = None, shardings: Any = None) -> tuple[Any, dict[str, Any], int]:
        """The newest checkpoint (or ``step``) that reads back and verifies, as ``(state, loop, step)``.

        A damaged newer checkpoint is skipped with a warning naming it and the error; a checkpoint of another
        model raises `CheckpointMismatchError` at once (falling back would hide the mistake).
        """
        candidates = [step] if step is not None else self.steps()[::-1]
        abstract_state(target, shardings)  # raises on an impossible layout before any checkpoint is blamed
        if not candidates:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        errors = []
        for candidate in candidates:
            try:
                state, loop = self.restore_step(candidate, target, shardings)
            except (CheckpointMismatchError, KeyboardInterrupt):
                raise
            except Exception as exc:  # truncated files, bad JSON, failed checksums: try the previous one
                errors.append(f"step {candidate}: {type(exc).__name__}: {exc}")
                warnings.warn(f"checkpoint {self.directory}/{candidate} is damaged and was skipped ({exc})", stacklevel=2)
                continue
            if errors:
                warnings.warn(f"restored the previous good checkpoint, step {candidate}", stacklevel=2)
            return state, loop, candidate
        raise CorruptCheckpointError(f"no readable checkpoint under {self.directory}:\n  " + "\n  ".join(errors))

    def restore_subtree(self, select: Callable[[dict], dict] | str = "params", step: int | None = None) -> Any:
        """Only part of a checkpoint's state (default its ``params``; a top-level key, or a function returning a nested
        dict of the saved tree's wanted entries), read without loading the rest: for a backbone, inference or another model's initialisation."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
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
        return restored if callable(select) else restored[select]


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
