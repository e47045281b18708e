"""oneDNN's CPU kernels through ``jax.ffi``: the ``"onednn"`` lowering of convolutions.

`library` finds oneDNN, compiles the C++ beside it on first use and registers the custom calls; `conv` is
the lowering (forward and both gradients, transposable, batched under `jax.vmap`). Where oneDNN or a compiler
is missing, or the backend is not a CPU, `library.available` is False and layers use XLA's path.
"""
