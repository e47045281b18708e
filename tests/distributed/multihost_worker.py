"""One process of a 2-process CPU run (used by test_multihost.py): joins the JAX runtime, trains a few mesh
steps feeding only its own rows of each batch, and (process 0) writes the final parameters."""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(coordinator: str, process_id: int, out: str) -> None:
    from jaxdl.distributed.parallel import make_parallel
    from jaxdl.distributed.runtime import initialize_distributed

    initialize_distributed(coordinator, 2, process_id)
    assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
    from tests.distributed.multihost_reference import train

    params = train(make_parallel("mesh"))
    if jax.process_index() == 0:
        np.savez(out, **params)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
