"""Test set-up: fake 8 CPU devices before jax is imported, strict numerics, bounded hypothesis runs."""

import atexit
import os
import shutil
import tempfile

# The suite is compile-bound: LLVM at optimisation level 1 compiles XLA:CPU programs 1.3-10x faster than the
# default level (the threefry random-number code of initialisers, dropout and augmentation above all) and
# computes the same values (tests/experiment/test_experiment.py checks it bitwise for initialisation). Level 0 is
# never used: it miscompiles. Experiments and benchmarks run at the default level.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
from hypothesis import settings  # noqa: E402

# Many tests compile the same programs (a smoke test's train run and its `evaluate` rebuild the same steps):
# a persistent cache for this test run turns the repeats into cache hits.
_CACHE = tempfile.mkdtemp(prefix="jaxdl-test-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
# Pretrained imports go to this run's cache, never the user's ~/.cache.
os.environ["JAXDL_CACHE"] = os.path.join(_CACHE, "jaxdl")
# Subprocess tests (multi-host, SIGKILL and resume) share it through the environment.
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"

# "auto" convolutions take the fixed rule instead of timing each use (jaxdl.nn.lowering): timings taken under a
# parallel suite are noise, and the choice must not vary between runs; tests/nn/test_autotune.py turns measuring
# on where it is the subject.
from jaxdl.nn import lowering  # noqa: E402

lowering.configure(measure=False)

# Test processes reuse the host memory compiled programs free, as `jaxdl train`'s process does
# (jaxdl.util.host_memory): fewer page faults per step; tests/reliability/test_host_memory.py tests the setting.
from jaxdl.util.host_memory import keep_freed_host_memory  # noqa: E402

keep_freed_host_memory()

# Silent broadcasting between arrays of different rank, and silent dtype promotion (an int32 array times a
# float32 one, a float32 array drifting to float64), are bugs in library code: make both errors.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# "jaxdl" (the default, what CI runs): derandomized, so a CI failure reproduces; cheap properties ask for more
# examples and those whose examples each compile a program for fewer. "thorough" explores at random (200 each).
settings.register_profile("jaxdl", deadline=None, max_examples=10, derandomize=True, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "jaxdl"))
