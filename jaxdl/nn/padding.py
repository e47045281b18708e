"""Padding arguments in every form `flax.linen.Conv` takes, turned into what the lowerings compute with.

``"SAME"``/``"VALID"`` (any case), an int (that many pixels on every side), one int per spatial axis (that
many on both sides of it), or ``((top, bottom), (left, right))``; convolutions also take ``"CIRCULAR"``
(periodic borders) and ``"REFLECT"`` (mirrored borders), computed as Flax does: the input padded by
``((k - 1) // 2, k // 2)`` per axis with wrapped or reflected pixels, then a ``"VALID"`` convolution.
``"CAUSAL"`` is a 1-D padding in Flax and is refused for images, as is anything else, naming the valid forms.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]
BORDER_MODES = {"CIRCULAR": "wrap", "REFLECT": "reflect"}
_FORMS = ("'SAME', 'VALID', 'CIRCULAR', 'REFLECT', an int, one int per axis (h, w), "
          "or ((top, bottom), (left, right))")


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """An int, or a pair of ints, as a pair (height, width)."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"expected an int or a pair of ints, got {value!r}")
    return value  # type: ignore[return-value]


def normalize_padding(padding: Padding, border_modes: bool = False) -> str | list[tuple[int, int]]:
    """``padding`` as ``"SAME"``, ``"VALID"``, ``"CIRCULAR"``/``"REFLECT"`` (only with ``border_modes``) or
    explicit pairs per spatial axis; any other form is refused with the valid ones."""
    if isinstance(padding, str):
        upper = padding.upper()
        if upper in ("SAME", "VALID") or (border_modes and upper in BORDER_MODES):
            return upper
        hint = " ('CAUSAL' pads one axis of a 1-D sequence in Flax; pad an image explicitly instead)" if upper == "CAUSAL" else ""
        allowed = _FORMS if border_modes else _FORMS.replace("'CIRCULAR', 'REFLECT', ", "")
        raise ValueError(f"padding must be {allowed}; got {padding!r}{hint}")
    if isinstance(padding, int):
        return [(padding, padding), (padding, padding)]
    values = list(padding)
    if len(values) == 2 and all(isinstance(v, int) for v in values):
        return [(values[0], values[0]), (values[1], values[1])]
    if len(values) == 2 and all(len(tuple(v)) == 2 for v in values if not isinstance(v, int)) and not any(
            isinstance(v, int) for v in values):
        return [tuple(int(p) for p in v) for v in values]  # type: ignore[misc]
    raise ValueError(f"padding must be {_FORMS}; got {padding!r}")


def pad_border(x: jax.Array, mode: str, kernel: tuple[int, int], dilation: tuple[int, int]) -> jax.Array:
    """``x: [batch, h, w, c]`` padded for a ``"CIRCULAR"`` or ``"REFLECT"`` convolution of ``kernel`` (dilated)."""
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    pads = [(0, 0)] + [((s - 1) // 2, s // 2) for s in spans] + [(0, 0)]
    return jnp.pad(x, pads, mode=BORDER_MODES[mode])
