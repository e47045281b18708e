"""The JAX runtime around a run: the persistent compilation cache and joining a multi-host run."""

from __future__ import annotations

import jax


def configure_compilation_cache(directory: str | None, min_compile_seconds: float = 1.0) -> None:
    """Persist compiled programs that took at least ``min_compile_seconds`` to build in ``directory``, so a
    rerun of the same experiment (same program, same JAX and backend) skips their compilation."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", str(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join a multi-host run through `jax.distributed.initialize` (no arguments: detect TPU/SLURM settings)."""
    if coordinator is None and (num_processes is not None or process_id is not None):
        raise ValueError("--num-processes and --process-id need --coordinator HOST:PORT")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
