"""Fingerprints of every array of a state, computed where the arrays live, that every restore verifies.

A fingerprint does not depend on the device count or sharding the state was saved from or restored onto;
`checksums` (CRC32 of host copies) verifies checkpoints written before fingerprints existed.
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.util.tree import path_to_str


def _words(x: jax.Array) -> jax.Array:
    """``x``'s bits as a flat uint32 vector (narrower types widened, 64-bit ones split in two words)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    bits = x.dtype.itemsize * 8
    x = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{bits}"))
    if bits == 64:
        x = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return x.astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> jax.Array:
    # Two sums mod 2**32 of every word times an odd weight of its position: a flipped bit or a changed word
    # always changes the first, and integer sums are exact in any order, so the value does not depend on the
    # device count or sharding a state is saved from or restored onto.
    rows = []
    for x in leaves:
        w = _words(x)
        i = jnp.arange(w.size, dtype=jnp.uint32)
        mixed = (w ^ (w >> 16)) * jnp.uint32(0x45D9F3B)
        rows.append(jnp.stack([jnp.sum(w * (2 * i + 1), dtype=jnp.uint32), jnp.sum(mixed ^ i, dtype=jnp.uint32)]))
    return jnp.stack(rows) if rows else jnp.zeros((0, 2), jnp.uint32)


def _host_words(x: np.ndarray) -> np.ndarray:
    """`_words` in NumPy: the same uint32 words in the same order (dtypes canonicalised as `jnp.asarray` does,
    64-bit values as their two little-endian halves)."""
    x = np.ascontiguousarray(x, dtype=jax.dtypes.canonicalize_dtype(x.dtype))
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    words = x.reshape(-1).view(np.dtype(f"uint{x.dtype.itemsize * 8}"))
    return (words.view(np.uint32) if words.dtype == np.uint64 else words).astype(np.uint32)


def _host_fingerprint(x: np.ndarray) -> tuple[int, int]:
    """`_fingerprints`' two sums for one host array, in NumPy's wrapping uint32 arithmetic (the same values)."""
    w = _host_words(x)
    i = np.arange(w.size, dtype=np.uint32)
    mixed = (w ^ (w >> np.uint32(16))) * np.uint32(0x45D9F3B)
    return int(np.sum(w * (np.uint32(2) * i + np.uint32(1)), dtype=np.uint32)), int(np.sum(mixed ^ i, dtype=np.uint32))


def _on_host(leaf: Any) -> bool:
    """Whether a leaf's bytes are host memory already: a NumPy array, or a whole jax array on the CPU (no
    copy, and no program to trace and compile for each tree's structure)."""
    if isinstance(leaf, np.ndarray):
        return True
    return (isinstance(leaf, jax.Array) and leaf.is_fully_addressable and not jax.dtypes.issubdtype(
        leaf.dtype, jax.dtypes.prng_key) and all(d.platform == "cpu" for d in leaf.devices()))


def fingerprints(tree: Any) -> dict[str, int]:
    """A 64-bit fingerprint of every array of ``tree``, computed where the arrays live: in NumPy for arrays
    in host memory, by one compiled reduction for the others (sharded across accelerators, multi-host; no copy
    of the state to the host). Both give the same values."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    host = [_on_host(leaf) for _, leaf in flat]
    device = [i for i, on_host in enumerate(host) if not on_host]
    pairs = {i: _host_fingerprint(np.asarray(leaf)) for i, (_, leaf) in enumerate(flat) if host[i]}
    if device:
        values = np.asarray(jax.device_get(_fingerprints([jnp.asarray(flat[i][1]) for i in device])), np.uint64)
        pairs.update({i: (int(hi), int(lo)) for i, (hi, lo) in zip(device, values)})
    return {path_to_str(path): pairs[i][0] << 32 | pairs[i][1] for i, (path, _) in enumerate(flat)}


def checksums(tree: Any) -> dict[str, int]:
    """CRC32 of every array of ``tree`` this process can read whole: how checkpoints written before
    `fingerprints` are verified (each array is copied to the host)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            continue
        out[path_to_str(path)] = zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return out
