"""What a dropout mask costs on this backend, by the way its random bits are drawn.

Times ``where(mask, x / keep, 0)`` on one activation for: Flax's ``nn.Dropout`` mask (``bernoulli``: one 32-bit
threefry word an element), the same from XLA's RngBitGenerator (``impl="rbg"``), and jaxdl's mask (two
elements a word, `jaxdl.nn.dropout.dropout_mask`). Medians of blocks after a compile call, ms per call.
Run: ``python -m benchmarks.dropout_masks --shape 32,128,512``.
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.nn.dropout import dropout_mask
from jaxdl.nn.lowering.autotune import median_ms

RATE = 0.1


def mask_functions(shape: Sequence[int]) -> dict[str, Callable[[jax.Array, jax.Array], jax.Array]]:
    """``name -> jit(f(seed, x))``, each applying a dropout mask of ``RATE`` drawn its own way to ``x``."""
    shape = tuple(shape)

    def flax_bernoulli(seed, x):
        keep = jax.random.bernoulli(jax.random.PRNGKey(seed), 1.0 - RATE, shape)
        return jnp.where(keep, x / (1.0 - RATE), 0.0)

    def rbg_bernoulli(seed, x):
        keep = jax.random.bernoulli(jax.random.key(seed, impl="rbg"), 1.0 - RATE, shape)
        return jnp.where(keep, x / (1.0 - RATE), 0.0)

    def jaxdl_two_per_word(seed, x):
        keep, probability = dropout_mask(jax.random.PRNGKey(seed), RATE, shape)
        return jnp.where(keep, x / probability, 0.0)

    return {f.__name__: jax.jit(f) for f in (flax_bernoulli, rbg_bernoulli, jaxdl_two_per_word)}


def measure(shape: Sequence[int], repeats: int = 20, blocks: int = 3) -> dict[str, float]:
    """Median ms per call of each of `mask_functions` on a ``shape`` activation."""
    x = jnp.ones(tuple(shape), jnp.float32)
    return {name: median_ms(f, jnp.int32(0), x, calls=repeats, blocks=blocks) for name, f in mask_functions(shape).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="32,128,512", help="activation shape, comma-separated")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.shape.split(","))
    print(f"# dropout masks, rate {RATE}, shape {shape}, jax {jax.__version__}, backend {jax.default_backend()}")
    times = measure(shape, args.repeats, args.blocks)
    for name, ms in times.items():
        print(f"{name:22s} {ms:8.2f} ms  {times['flax_bernoulli'] / ms:5.2f}x")


if __name__ == "__main__":
    main()
