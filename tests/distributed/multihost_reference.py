"""The training run that test_multihost.py performs once in one process and once across two processes."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.distributed.parallel import Parallel
from jaxdl.distributed.sharding import path_name
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_train_step
from tests.training.helpers import blobs

BATCH, STEPS = 16, 4


def train(parallel: Parallel) -> dict[str, np.ndarray]:
    """Train a small MLP for `STEPS` steps under ``parallel``; return its parameters by path on the host."""
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-2}, 10, 1)
    state = parallel.put_state(create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0))
    step = parallel.compile_train_step(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))
    data = blobs(BATCH * STEPS, seed=1)
    for batch in data.train_batches(BATCH, seed=0, epoch=0, rows=parallel.host_rows(BATCH)):
        state, _ = step(state, parallel.put_batch(batch))
    params = parallel.to_host(parallel.get_state(state).params)  # every process holds a full replica
    return {path_name(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
