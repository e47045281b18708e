"""Keep the host memory a step frees for the next step, instead of mapping fresh pages every step.

XLA:CPU allocates a compiled step's buffers when the step runs and frees them when it ends. glibc's malloc serves
blocks above its mmap threshold (at most 32 MB) with fresh mappings and unmaps them on free, so each step of a
model with large buffers (ResNet's activations, the 130 MB workspace oneDNN's LSTM keeps for its backward pass)
faults all of their pages in again, and the kernel zeroes every page first: 2.4 million page faults in 60 steps
of the LSTM benchmark, ~13% of its step time (benchmarks/RESULTS.md). `keep_freed_host_memory` has glibc serve
every block from its heap and keep what is freed, so from the second step on the buffers are memory the process
already holds. The cost: the process keeps its peak host memory until it exits, which a training process reaches
in its first step anyway. `jaxdl train` calls it at start; a process of your own can call it first thing, or
start with ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_LARGEST = 2 ** 31 - 1  # mallopt takes an int


def keep_freed_host_memory() -> bool:
    """Make glibc's malloc serve large blocks from its heap (no per-block mappings), never trim the heap, and use
    one arena, so freed step buffers are reused without page faults. Returns False (changing nothing) where the
    C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl and others lack it
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # One arena: the other threads' arenas are mapped heaps of at most 64 MB that glibc shrinks on its own.
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _LARGEST), (_M_ARENA_MAX, 1)))
