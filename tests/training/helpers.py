"""Small models and data shared by the training tests."""

import jax.numpy as jnp
import numpy as np

from jaxdl.data.pipeline import ArrayDataset
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP, ConvNet
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step, make_train_step


def blobs(n: int, seed: int = 0, classes: int = 3, shape=(4, 4, 1)) -> ArrayDataset:
    """Gaussian blobs: class c is centred at c along every input dimension (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (rng.normal(size=(n,) + shape) * 0.5 + y.reshape((n,) + (1,) * len(shape))).astype(np.float32)
    return ArrayDataset(x, y)


def small_setup(model=None, optimizer=None, seed=0, classes=3, shape=(4, 4, 1)):
    """A model, steps and initial state for blobs data."""
    model = model or MLP(hidden_sizes=(16,), num_outputs=classes, dropout_rate=0.1)
    tx, schedule = make_optimizer(optimizer or {"name": "adam", "learning_rate": 1e-2}, 10, 3)
    metrics_fn = classification_metrics(classes)
    state = create_train_state(model, tx, jnp.zeros((1,) + shape), seed)
    return (model, state, make_train_step(model, softmax_cross_entropy, metrics_fn, tx),
            make_eval_step(model, softmax_cross_entropy, metrics_fn), schedule)


def bn_convnet(classes=3):
    return ConvNet(channels=(4,), num_outputs=classes, batch_norm=True, dense=(8,), dropout_rate=0.2)
