"""Where a step runs: one device (``jit``), one copy per device (``pmap``, JAX's legacy path) or a device
mesh (``jit`` with shardings, across hosts through JAX's multi-host runtime)."""

from jaxdl.distributed.parallel import STRATEGIES, Parallel, make_parallel

__all__ = ["STRATEGIES", "Parallel", "make_parallel"]
