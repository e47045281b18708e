"""Strict name mapping from a source state dict onto a Flax variables tree.

A converter supplies ``target(name) -> (path, transform) | None``: the Flax variable path (collection first,
e.g. ``("params", "stem", "conv", "kernel")``) that a source array fills and how to reshape it. `fill`
applies it to every source array and refuses to guess: a source name the mapping does not know, a
variable nothing fills, or a shape that differs is an error naming them, never a silent skip.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

Path = tuple[str, ...]
Target = Callable[[str], "tuple[Path, Callable[[np.ndarray], np.ndarray] | None] | None"]


def _listed(names: list[str], limit: int = 10) -> str:
    return f"{names[:limit]}{' ...' if len(names) > limit else ''}"


def torch_conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch OIHW convolution weights -> Flax HWIO kernels (depthwise O,1,H,W -> H,W,1,O alike)."""
    return weight.transpose(2, 3, 1, 0)


def torch_linear_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch ``(out, in)`` linear weights -> Flax ``(in, out)`` kernels."""
    return weight.T


def fill(weights: dict[str, np.ndarray], target: Target, reference: Any, ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """The variables tree shaped like ``reference`` (a freshly initialised model's variables, or params),
    filled from ``weights`` through ``target``; names in ``ignored`` are known and deliberately dropped.

    Raises ``ValueError`` listing unknown source names, unfilled variables and shape clashes.
    """
    expected = {path: np.shape(leaf) for path, leaf in flatten_dict(reference).items()}
    filled: dict[Path, np.ndarray] = {}
    unknown, clashes = [], []
    for name, array in weights.items():
        if name in ignored or any(name.endswith(suffix) for suffix in ignored if suffix.startswith(".")):
            continue
        found = target(name)
        if found is None or found[0] not in expected:
            unknown.append(name)
            continue
        path, transform = found
        value = np.asarray(transform(array) if transform else array, np.float32)
        if value.shape != expected[path]:
            clashes.append(f"{name} {array.shape} -> {'/'.join(path)} needs {expected[path]}, got {value.shape}")
            continue
        if path in filled:
            raise ValueError(f"two source arrays fill {'/'.join(path)}: the mapping is wrong")
        filled[path] = value
    missing = sorted("/".join(p) for p in set(expected) - set(filled))
    if unknown or missing or clashes:
        raise ValueError("the weights do not match the model: "
                         + "; ".join(part for part in (
                             f"unknown source names {_listed(sorted(unknown))}" if unknown else "",
                             f"variables left unfilled {_listed(missing)}" if missing else "",
                             f"shape clashes {_listed(clashes, 5)} (weights of a model of another size?)" if clashes else "",
                         ) if part))
    return unflatten_dict(filled)
