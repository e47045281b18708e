"""Sharding rules for the ``mesh`` strategy: ``(parameter-path regex, partition spec)`` pairs, checked against
the parameters before anything is placed (every rule must match, ranks and divisibility must fit)."""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

ShardingRule = tuple[str, tuple[str | None, ...]]


def path_name(path: Sequence[Any]) -> str:
    """A pytree key path as ``"params/Dense_0/kernel"`` (how sharding rules and error messages name leaves)."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def check_sharding_rules(rules: Sequence[ShardingRule], params: Any, mesh: Mesh) -> tuple[ShardingRule, ...]:
    """Validate ``(regex, spec)`` rules against the parameter paths: every rule must match a parameter of the
    spec's rank whose sharded dimensions divide by the mesh axis sizes, and name only mesh axes."""
    names = {path_name(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
    checked = []
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"a sharding rule is (regex, spec), e.g. ('Dense_0/kernel', (None, 'model')); got {rule!r}")
        pattern, spec = rule[0], tuple(rule[1])
        for axis in spec:
            if axis is not None and axis not in mesh.shape:
                raise ValueError(f"sharding rule {pattern!r} names mesh axis {axis!r}; the mesh axes are {list(mesh.shape)}")
        matched = [n for n in names if re.search(pattern, n)]
        if not matched:
            shown = sorted(names)[:20]
            raise ValueError(f"sharding rule {pattern!r} names no parameter; parameter paths are {shown}"
                             f"{' ...' if len(names) > 20 else ''}")
        for name in matched:
            shape = np.shape(names[name])
            if len(shape) != len(spec):
                raise ValueError(f"sharding rule {pattern!r} has spec {spec} of rank {len(spec)} but {name} has shape {shape}")
            for dim, axis in zip(shape, spec):
                if axis is not None and dim % mesh.shape[axis]:
                    raise ValueError(f"sharding rule {pattern!r}: {name} dimension {dim} is not divisible by mesh axis "
                                     f"{axis!r} of size {mesh.shape[axis]}")
        checked.append((pattern, spec))
    return tuple(checked)
