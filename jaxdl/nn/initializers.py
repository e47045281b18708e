"""Weight initializers by name.

Names follow the papers (Xavier/Glorot, He, LeCun); each returns a `jax.nn.initializers` function
``init(key, shape, dtype) -> Array`` whose variance is scaled by the fan-in and/or fan-out of the layer.
"""

from __future__ import annotations

from typing import Callable

import jax

Initializer = Callable[..., jax.Array]

_INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    "xavier_uniform": jax.nn.initializers.glorot_uniform,
    "xavier_normal": jax.nn.initializers.glorot_normal,
    "glorot_uniform": jax.nn.initializers.glorot_uniform,
    "glorot_normal": jax.nn.initializers.glorot_normal,
    "he_uniform": jax.nn.initializers.he_uniform,
    "he_normal": jax.nn.initializers.he_normal,
    "kaiming_uniform": jax.nn.initializers.he_uniform,
    "kaiming_normal": jax.nn.initializers.he_normal,
    "lecun_uniform": jax.nn.initializers.lecun_uniform,
    "lecun_normal": jax.nn.initializers.lecun_normal,
    "lecun": jax.nn.initializers.lecun_normal,
    "zeros": lambda: jax.nn.initializers.zeros,
}


def available_initializers() -> list[str]:
    """The names `get_initializer` accepts."""
    return sorted(_INITIALIZERS)


def get_initializer(name: str | Initializer) -> Initializer:
    """Return the initializer called ``name`` (or ``name`` itself when it is already a function).

    Xavier/Glorot keeps ``Var(w) = 2 / (fan_in + fan_out)``, He keeps ``2 / fan_in`` (for ReLU layers),
    LeCun keeps ``1 / fan_in``; the ``_uniform`` and ``_normal`` variants draw from the named distribution
    with that variance (normal variants are truncated at two standard deviations and rescaled).
    """
    if callable(name):
        return name
    key = str(name).lower()
    if key not in _INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; valid names are {available_initializers()}")
    return _INITIALIZERS[key]()
