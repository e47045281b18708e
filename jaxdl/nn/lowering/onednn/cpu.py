"""What this CPU offers oneDNN's kernels, read once from the kernel's CPU flags."""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``); empty where the file is absent (not Linux)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.split(":", 1)[1].split()) if ":" in line else frozenset()


def has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX), where oneDNN's bfloat16 kernels pay."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
