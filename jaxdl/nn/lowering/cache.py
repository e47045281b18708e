"""The on-disk record of measured lowering choices: one JSON file per machine (CPU model, core count, jax
version, XLA flags) under ``$JAXDL_CACHE/autotune`` (else ``~/.cache/jaxdl/autotune``), rewritten whole and
renamed into place so it is never half-written; an unreadable file is ignored with a warning."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import tempfile
import warnings

import jax

from jaxdl.util.cache_root import cache_root


def cache_file() -> pathlib.Path:
    """This machine's on-disk cache of choices: one JSON file per CPU model, core count and jax version."""
    machine = json.dumps(machine_description(), sort_keys=True)
    return cache_root() / "autotune" / f"{hashlib.sha1(machine.encode()).hexdigest()[:16]}.json"


def machine_description() -> dict[str, str]:
    """What a choice depends on: CPU model, architecture, core count, jax version and XLA flags."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "arch": platform.machine(), "cores": str(os.cpu_count()), "jax": jax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def load_choices(path: pathlib.Path) -> dict:
    """The choices recorded in ``path`` by cache key; empty when there is no file, with a warning when it is unreadable."""
    try:
        data = json.loads(path.read_text())
        return data["choices"] if isinstance(data.get("choices"), dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as error:
        warnings.warn(f"ignoring the unreadable autotune cache {path} ({error}); it will be rewritten", stacklevel=3)
        return {}


def store_choices(path: pathlib.Path, records: dict[str, dict]) -> None:
    """Add choices to the cache file, written whole to a temporary file and renamed (never half-written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        choices = load_choices(path)
        choices.update(records)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump({"machine": machine_description(), "choices": choices}, handle, indent=1, sort_keys=True)
        os.replace(handle.name, path)
    except OSError as error:  # a read-only home must not stop training: the choices still hold for this process
        warnings.warn(f"could not write the autotune cache {path}: {error}", stacklevel=3)
