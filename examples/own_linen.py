"""Your own Flax Linen model on your own arrays: a Keras-style classifier of the breast-cancer data set
(scikit-learn, 569 tumours, 30 measurements), with its own ``deterministic`` dropout flag and a sigmoid output.

    python -m examples.own_linen
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

import jaxdl as jd


class Classifier(nn.Module):
    """Dense 64 relu -> dropout -> Dense 32 relu -> Dense 1 sigmoid, written as a Keras user would."""

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        x = nn.relu(nn.Dense(64)(x))
        x = nn.Dropout(0.2, deterministic=deterministic)(x)
        x = nn.relu(nn.Dense(32)(x))
        return nn.sigmoid(nn.Dense(1)(x))[:, 0]


def main(quick: bool = False) -> dict[str, float]:
    """Train, then report the held-out accuracy; ``quick`` trains 2 epochs instead of 30."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)  # standardised measurements
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order].astype(np.float32)
    train, test = slice(0, 450), slice(450, None)
    run = jd.fit(Classifier(), (x[train], y[train]), loss="binary_crossentropy", from_logits=False,
                 epochs=2 if quick else 30, batch_size=32, validation_split=0.2, progress=not quick)
    result = run.evaluate((x[test], y[test]))
    print(f"test accuracy {result['accuracy']:.3f} after {len(run.history['loss'])} epochs")
    print(jd.summary(Classifier(), x[:2]))
    return result


if __name__ == "__main__":
    main()
