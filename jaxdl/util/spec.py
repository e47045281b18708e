"""Parse ``"name(key=value, ...)"`` strings: how configs name a function and its arguments in one string."""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable

_SPEC = re.compile(r"^\s*(?P<name>[a-z_][a-z0-9_]*)\s*(\((?P<args>[^()]*)\))?\s*$")


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.strip().strip("'\"")  # a word, e.g. mode=reflect: the function checks it


def parse_spec(spec: str, registry: dict[str, Callable[..., Any]], kind: str, positional: tuple[str, ...] = ("x",)) -> tuple[str, dict[str, Any]]:
    """Split ``"leaky_relu(alpha=0.2)"`` into ``("leaky_relu", {"alpha": 0.2})`` and check both parts.

    ``registry`` maps valid names to functions; keyword names are checked against the function's signature
    (minus ``positional``, its data arguments). Errors name the ``kind`` of thing and list what is valid.
    """
    match = _SPEC.match(str(spec))
    if match is None or match["name"] not in registry:
        raise ValueError(f"unknown {kind} {spec!r}; valid names are {sorted(registry)} "
                         "(keyword arguments in brackets, e.g. 'name(key=value)')")
    name, kwargs = match["name"], {}
    for part in (match["args"] or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{kind} {spec!r}: arguments must be key=value, got {part.strip()!r}")
        kwargs[key.strip()] = _parse_value(value)
    accepted = [p for p in inspect.signature(registry[name]).parameters if p not in positional]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{kind} {name!r} takes {accepted}, not {unknown}")
    return name, kwargs
