"""Test set-up: fake 8 CPU devices before jax is imported, strict numerics, bounded hypothesis runs."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from hypothesis import settings  # noqa: E402

# Silent broadcasting between arrays of different rank is a bug in library code: make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("jaxdl", deadline=None, max_examples=12, derandomize=True, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "jaxdl"))
