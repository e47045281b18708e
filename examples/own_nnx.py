"""Your own Flax NNX model: a small CNN with BatchNorm and dropout on scikit-learn's 8x8 digits, trained by
jaxdl's step and loop (its BatchNorm statistics carried as jaxdl's batch_stats, its dropout reseeded per step).

    python -m examples.own_nnx
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

import jaxdl as jd


class DigitsCNN(nnx.Module):
    """conv 16 -> BatchNorm -> relu -> pool -> dropout -> Dense 10."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(4 * 4 * 16, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.norm(self.conv(x)))
        x = nnx.max_pool(x, (2, 2), (2, 2))
        return self.out(self.dropout(x.reshape(x.shape[0], -1)))


def main(quick: bool = False) -> dict[str, float]:
    """Train on jaxdl's registered ``digits`` split; report test accuracy."""
    from jaxdl.config import default_config
    from jaxdl.data import load_dataset

    config = default_config().data
    config.name = "digits"
    splits = load_dataset(config)
    run = jd.fit(DigitsCNN(nnx.Rngs(0)), splits, loss="sparse_categorical_crossentropy", epochs=2 if quick else 20,
                 batch_size=64, learning_rate=3e-3, progress=not quick)
    result = run.evaluate(splits.test)
    print(f"test accuracy {result['accuracy']:.3f}; BatchNorm statistics kept: "
          f"{sorted(jax.tree.leaves(jax.tree.map(np.shape, run.state.batch_stats)))[:2]}")
    return result


if __name__ == "__main__":
    main()
