"""Freed host memory is kept for the next allocation (no page faults), as `jaxdl train` sets the process up."""

import subprocess
import sys

import pytest

# A child process mallocs, writes and frees a 96 MB block 10 times (a step's buffers, above glibc's 32 MB mmap
# ceiling) and prints the page faults of the last 9 rounds.
_ROUNDS = """
import ctypes, resource, sys
from jaxdl.util.host_memory import keep_freed_host_memory
applied = keep_freed_host_memory() if sys.argv[1] == "kept" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def round_trip():
    block = libc.malloc(96 << 20)
    ctypes.memset(block, 1, 96 << 20)
    libc.free(block)
round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    round_trip()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_is_reused_without_faulting_its_pages_in_again():
    applied, kept = _faults("kept")
    if applied != "True":
        pytest.skip("the C library is not glibc")
    _, default = _faults("default")
    pages = 9 * (96 << 20) // 4096
    assert default > pages // 4  # the default maps (and faults in) each block afresh
    assert kept < pages // 100


