"""Parameter paths: name the leaves of a parameter pytree as ``"Dense_0/kernel"`` and select them by regex.

Penalties, weight-decay masks and freezing all pick parameters by path; one helper serves them all.
"""

from __future__ import annotations

import re
from typing import Any

import jax

PyTree = Any


def path_to_str(path: tuple) -> str:
    """Join a `jax.tree_util` key path into ``"a/b/c"``."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def leaf_paths(tree: PyTree) -> list[str]:
    """All leaf paths of ``tree`` in flattening order."""
    return [path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def match_mask(tree: PyTree, pattern: str | None) -> PyTree:
    """A pytree of bools like ``tree``: True where the leaf path matches regex ``pattern`` (``re.search``).

    ``pattern=None`` selects every leaf. A pattern that selects nothing raises ``ValueError`` listing the
    paths, since a penalty or mask over no parameter is almost always a typo.
    """
    if pattern is None:
        return jax.tree.map(lambda _: True, tree)
    regex = re.compile(pattern)
    mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(regex.search(path_to_str(p))), tree)
    if not any(jax.tree.leaves(mask)):
        paths = leaf_paths(tree)
        shown = ", ".join(paths[:12]) + (" ..." if len(paths) > 12 else "")
        raise ValueError(f"parameter pattern {pattern!r} matches no parameter; paths are: {shown}")
    return mask
