"""How jaxdl's convolutions are computed, chosen in one place for every layer.

GPUs and TPUs run XLA's own convolutions. On a CPU, XLA's convolutions (and their gradients) are often
slower than the same sums written as matmuls, so jaxdl has CPU lowerings: patches convolutions and
shifted-view depthwise sums (`patches`), stride-phase transposed convolutions (`transpose_phases`), and an
autotuner that times them per use on this machine before a step is compiled (`autotune`). Layers never carry
a lowering field: they ask `select.lowered`, which reads `settings`:

- ``configure(mode="auto" | "xla" | "patches", measure=True)`` for the process (``train.lowering`` in a config);
- ``with use("xla"): ...`` for a block;
- ``tune(step, *args)`` measures a step's uses before it is traced (jaxdl's compiled steps call it on their
  first call; a hand-written loop calls it before ``jax.jit``).
"""

from jaxdl.nn.lowering.autotune import choices, tune
from jaxdl.nn.lowering.settings import MODES, LoweringSettings, configure, current, use

__all__ = ["MODES", "LoweringSettings", "choices", "configure", "current", "tune", "use"]
