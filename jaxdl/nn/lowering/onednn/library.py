"""oneDNN's CPU kernels as XLA custom calls: found, compiled into jaxdl's cache on first use, loaded, registered.

oneDNN comes from PyPI (``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp``: the CPU-only build on GNU OpenMP,
~160 MB, a dependency of jaxdl on Linux x86-64) or from wherever ``JAXDL_ONEDNN_ROOT`` points (a prefix with
``include/oneapi/dnnl`` and ``lib/libdnnl.so``, oneDNN 3.x with a CPU runtime). The C++ sources beside this
file are compiled on first use, not at install: the build then needs no compiler, a missing compiler or
oneDNN costs one line on stderr instead of a failed install, and the library is built against the jaxlib and
oneDNN actually installed (both are in its cache key, with the sources and the compiler). The build goes to
``$JAXDL_CACHE/kernels/<key>/`` (else ``~/.cache/jaxdl/kernels``) under a file lock, written to a temporary
name and renamed, so concurrent processes (pytest-xdist, many hosts on one disk) build it once and never load
half a file.

Where anything is missing (no oneDNN, no compiler, a build error, another backend than the CPU), `load`
returns None and `unavailable_reason` says why; callers fall back to XLA's path.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from typing import Iterator

import numpy as np

from jaxdl.nn.lowering.settings import current
from jaxdl.util.cache_root import cache_root

SOURCES = ("kernels.cc",)  # includes the four files below: one compilation parses the headers once
HEADERS = ("common.h", "batch_norm.cc", "conv.cc", "pooling.cc", "recurrent.cc")
TARGETS = (
    "jaxdl_onednn_batch_norm_forward",
    "jaxdl_onednn_batch_norm_backward",
    "jaxdl_onednn_conv_forward",
    "jaxdl_onednn_conv_backward_data",
    "jaxdl_onednn_conv_backward_weights",
    "jaxdl_onednn_max_pool_forward",
    "jaxdl_onednn_max_pool_backward",
    "jaxdl_onednn_lstm_forward",
    "jaxdl_onednn_lstm_backward",
)
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _version(include: pathlib.Path) -> tuple[int, int, int] | None:
    try:
        text = (include / "oneapi" / "dnnl" / "dnnl_version.h").read_text()
    except OSError:
        return None
    parts = [re.search(rf"#define DNNL_VERSION_{name} (\d+)", text) for name in ("MAJOR", "MINOR", "PATCH")]
    return tuple(int(p.group(1)) for p in parts) if all(parts) else None  # type: ignore[return-value]


def _cpu_runtime(include: pathlib.Path) -> str:
    text = (include / "oneapi" / "dnnl" / "dnnl_config.h").read_text()
    match = re.search(r"#define DNNL_CPU_RUNTIME DNNL_RUNTIME_(\w+)", text)
    return match.group(1) if match else "unknown"


def _prefixes() -> list[pathlib.Path]:
    if os.environ.get("JAXDL_ONEDNN_ROOT"):
        return [pathlib.Path(os.environ["JAXDL_ONEDNN_ROOT"])]
    found = [pathlib.Path(sys.prefix), pathlib.Path(sysconfig.get_config_var("prefix") or sys.prefix)]
    return found + [pathlib.Path("/usr/local"), pathlib.Path("/usr")]


def find_onednn() -> tuple[pathlib.Path, pathlib.Path, tuple[int, int, int]] | str:
    """``(include dir, library dir, version)`` of a usable oneDNN 3.x, or a sentence saying why there is none."""
    rejected = []
    for prefix in dict.fromkeys(_prefixes()):
        include = prefix / "include"
        version = _version(include)
        if version is None:
            continue
        libs = [d for d in (prefix / "lib", prefix / "lib64", prefix / "lib" / "x86_64-linux-gnu")
                if (d / "libdnnl.so").exists() or (d / f"libdnnl.so.{version[0]}").exists()]
        runtime = _cpu_runtime(include)
        if version[0] < 3:
            rejected.append(f"{prefix} has oneDNN {'.'.join(map(str, version))} (3.x is needed)")
        elif runtime not in ("OMP", "TBB", "SEQ"):
            rejected.append(f"{prefix} has a oneDNN whose CPU runtime is {runtime} (an OpenMP, TBB or sequential "
                            "build is needed)")
        elif not libs:
            rejected.append(f"{prefix} has oneDNN's headers but no libdnnl.so")
        else:
            return include, libs[0], version
    hint = "pip install onednn-cpu-gomp onednn-devel-cpu-gomp, or set JAXDL_ONEDNN_ROOT"
    return ("; ".join(rejected) + f" ({hint})") if rejected else f"oneDNN was not found ({hint})"


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(compiler: str, include: pathlib.Path, libdir: pathlib.Path) -> pathlib.Path | str:
    """The compiled library (built now unless the cache has it), or the compiler's complaint."""
    import jax
    here = pathlib.Path(__file__).parent
    sources = [here / name for name in SOURCES]
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden",
             f"-I{jax.ffi.include_dir()}", f"-I{include}", f"-L{libdir}", "-ldnnl",
             # DT_RPATH (not RUNPATH) so that libdnnl's own dependencies resolve from its directory too.
             f"-Wl,--disable-new-dtags,-rpath,{libdir}"]
    try:
        compiler_version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                          timeout=60).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as error:
        return f"the C++ compiler {compiler} does not run ({error})"
    digest = hashlib.sha256()
    headers = [here / name for name in HEADERS]
    for part in [*(s.read_bytes() for s in sources + headers), *(f.encode() for f in flags), jax.__version__.encode(),
                 str(compiler_version).encode(), (include / "oneapi" / "dnnl" / "dnnl_version.h").read_bytes()]:
        digest.update(part + b"\0")
    target = cache_root() / "kernels" / digest.hexdigest()[:20] / "libjaxdl_onednn.so"
    if target.exists():
        return target
    with _file_lock(target.parent / ".lock"):
        if target.exists():  # another process built it while this one waited
            return target
        sys.stderr.write(f"jaxdl: compiling the oneDNN kernels into {target.parent} (once per installation)\n")
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so.tmp", delete=False) as handle:
            partial = pathlib.Path(handle.name)
        try:
            result = subprocess.run([compiler, *map(str, sources), *flags, "-o", str(partial)],
                                    capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                errors = [line for line in result.stderr.splitlines() if "error" in line]  # not the warnings
                return f"compiling the oneDNN kernels failed: {chr(10).join(errors[:10]) or result.stderr.strip()[-2000:]}"
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def _load() -> ctypes.CDLL | str:
    import jax
    if jax.default_backend() != "cpu":
        return f"oneDNN's kernels are for CPUs; this process computes on {jax.default_backend()}"
    found = find_onednn()
    if isinstance(found, str):
        return found
    include, libdir, _ = found
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        return "no C++ compiler was found (install g++ or set CXX)"
    built = _compile(compiler, include, libdir)
    if isinstance(built, str):
        return built
    # GNU OpenMP's own wait policy is kept (threads spin briefly, then sleep): every oneDNN call runs on one
    # thread (common.h), so there is one team of as many threads as cores. Measured on 2 cores: "passive"
    # costs the LSTM 1.3x (100 short parallel regions a sequence), "active" slows XLA's own operations.
    try:
        library = ctypes.CDLL(str(built))
        handlers = {name: getattr(library, name) for name in TARGETS}
    except (OSError, AttributeError) as error:
        return f"loading the oneDNN kernels failed ({error})"
    for name, handler in handlers.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
    return library


def load() -> ctypes.CDLL | None:
    """The loaded kernel library with its FFI targets registered, built on first use; None where oneDNN's
    kernels cannot run here (then `unavailable_reason` says why, and stderr said it once)."""
    with _LOCK:
        if "library" not in _STATE:
            loaded = _load()
            _STATE["library"] = loaded if not isinstance(loaded, str) else None
            _STATE["reason"] = loaded if isinstance(loaded, str) else ""
            if isinstance(loaded, str) and "for CPUs" not in loaded:
                sys.stderr.write(f"jaxdl: oneDNN kernels unavailable, XLA computes convolutions, pooling, BatchNorm and LSTMs: {loaded}\n")
        return _STATE["library"]  # type: ignore[return-value]


def workspace_query(name: str, *sizes: int, window: np.ndarray | None = None) -> int:
    """What the kernel library's ``int64_t name(int64_t..., [const int64_t* window])`` answers: the bytes of a
    primitive's workspace, asked of oneDNN itself; -1 where oneDNN has no such primitive."""
    function = getattr(load(), name)
    function.restype = ctypes.c_int64
    pointer = ctypes.POINTER(ctypes.c_int64)
    function.argtypes = [ctypes.c_int64] * len(sizes) + ([pointer] if window is not None else [])
    extra = (np.ascontiguousarray(window, np.int64).ctypes.data_as(pointer),) if window is not None else ()
    return int(function(*sizes, *extra))


def may_run(*arrays) -> bool:
    """Whether oneDNN's kernels may compute on ``arrays`` here: the CPU backend, a lowering other than ``"xla"``
    or ``"patches"``, concrete shapes (a symbolic batch, as `jax.export` traces, takes XLA's portable path),
    and the kernels loaded (built on the first call that gets this far)."""
    import jax
    if jax.default_backend() != "cpu" or current().mode in ("xla", "patches"):
        return False
    if not all(isinstance(d, int) for a in arrays for d in a.shape):
        return False
    return available()


def available() -> bool:
    """Whether oneDNN's kernels run here (builds and loads them on the first call)."""
    return load() is not None


def unavailable_reason() -> str:
    """Why `available` is False ('' when it is True)."""
    load()
    return str(_STATE.get("reason", ""))
