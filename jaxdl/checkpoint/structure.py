"""A checkpoint's tree against the state it is restored into: abstract targets and readable mismatches."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdl.util.tree import path_to_str


def absent_empty_fields(saved: Any, target: Any) -> set[str]:
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


def shapes_by_path(tree: Any) -> dict[str, tuple]:
    """Every leaf's shape by its path (``params/Dense_0/kernel``)."""
    return {path_to_str(p): tuple(getattr(x, "shape", np.shape(x))) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def dtypes_by_path(tree: Any) -> dict[str, str]:
    """Every leaf's dtype name by its path, for the leaves that have one."""
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
