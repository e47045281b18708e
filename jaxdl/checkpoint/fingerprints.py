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


def fingerprints(tree: Any) -> dict[str, int]:
    """A 64-bit fingerprint of every array of ``tree``, computed where the arrays live (one compiled reduction,
    no copy of the state to the host; sharded and multi-host arrays included)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = np.asarray(jax.device_get(_fingerprints([jnp.asarray(leaf) for _, leaf in flat])), np.uint64)
    return {path_to_str(path): int(hi << np.uint64(32) | lo) for (path, _), (hi, lo) in zip(flat, values)}


def checksums(tree: Any) -> dict[str, int]:
    """CRC32 of every array of ``tree`` this process can read whole: how checkpoints written before
    `fingerprints` are verified (each array is copied to the host)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            continue
        out[path_to_str(path)] = zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return out
