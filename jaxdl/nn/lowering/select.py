"""The one place where an operation's lowering is chosen: from `jaxdl.nn.lowering.settings` and the backend."""

from __future__ import annotations

from typing import Callable, Hashable, Mapping

import jax

from jaxdl.nn.lowering import autotune
from jaxdl.nn.lowering.settings import current


def lowered(op: str, lowerings: Mapping[str, Callable[..., jax.Array]], params: Hashable,
            cpu_rule: str) -> Callable[..., jax.Array]:
    """The function that computes ``op`` here: ``lowerings[mode]`` for a forced mode (``"xla"``, ``"patches"``,
    ``"onednn"``; one ``lowerings`` lacks, such as oneDNN where it is unavailable, takes the fixed rule);
    under ``"auto"`` XLA's own operation on GPU and TPU, and on a CPU the per-use choice of `autotune.tuned`
    (what `jaxdl.nn.lowering.tune` measured for this use, else ``cpu_rule``). ``lowerings`` holds one
    function per mode but ``"auto"``, all computing the same values; ``params`` are ``op``'s static arguments."""
    mode = current().mode
    if mode != "auto":
        # A forced lowering that does not apply here (oneDNN on a GPU, or for float16) takes the fixed rule.
        return lowerings.get(mode) or lowerings[cpu_rule if jax.default_backend() == "cpu" else "xla"]
    if jax.default_backend() != "cpu":
        return lowerings["xla"]
    return autotune.tuned(op, lowerings, params, default=cpu_rule)
