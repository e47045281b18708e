"""The step's gradient, update and parameter norms against the same norms computed outside the step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.pipeline import train_batches
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_train_step
from jaxdl.training.step_norms import TrainMetrics, task_metrics
from tests.training.helpers import blobs

OPTIMIZERS = [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 1e-2},
              {"name": "adamw", "learning_rate": 1e-2, "weight_decay": 0.1, "clip_norm": 0.5}]


def _flat_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(tree))))


@settings(max_examples=6)
@given(optimizer=st.sampled_from(OPTIMIZERS), seed=st.integers(0, 1000), accumulation=st.sampled_from([1, 2]))
def test_norms_equal_the_ones_computed_outside_the_step(optimizer, seed, accumulation):
    model = MLP(hidden_sizes=(8,), num_outputs=3)  # no dropout: the outside gradient sees the same function
    tx, _ = make_optimizer(optimizer, 10, 2)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), seed)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx,
                                   accumulation_steps=accumulation))
    batch = next(train_batches(blobs(16, seed=seed), 16, seed=0, epoch=0))

    def mean_loss(params):
        return jnp.mean(softmax_cross_entropy(model.apply({"params": params}, batch["x"]), batch["y"]))

    grads = jax.grad(mean_loss)(state.params)
    before = jax.device_get(state.params)
    new_state, metrics = step(state, batch)
    after = jax.device_get(new_state.params)
    values = metrics.compute()
    np.testing.assert_allclose(values["grad_norm"], _flat_norm(grads), rtol=1e-4)
    np.testing.assert_allclose(values["update_norm"], _flat_norm(jax.tree.map(np.subtract, after, before)),
                               rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(values["param_norm"], _flat_norm(after), rtol=1e-5)
    assert values["count"] == 16 and np.isfinite(values["loss"])


def test_a_window_reports_the_mean_norms_of_its_steps():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx = optax.sgd(0.1)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))
    window, per_step = None, []
    for batch in train_batches(blobs(64, seed=3), 16, seed=0, epoch=0):
        state, metrics = step(state, batch)
        per_step.append(metrics.compute()["grad_norm"])
        window = metrics if window is None else window.merge(metrics)
    assert len(set(per_step)) > 1
    np.testing.assert_allclose(window.compute()["grad_norm"], np.mean(per_step), rtol=1e-5)
    assert window.compute()["count"] == 64


def test_norms_off_returns_the_task_sums_alone():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx = optax.sgd(0.1)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    batch = next(train_batches(blobs(16), 16, seed=0, epoch=0))
    with_norms = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))(state, batch)[1]
    plain = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx, norms=False))(
        state, batch)[1]
    assert isinstance(with_norms, TrainMetrics) and not isinstance(plain, TrainMetrics)
    jax.tree.map(np.testing.assert_array_equal, task_metrics(with_norms), plain)
    assert with_norms.loss_sum == plain.loss_sum  # the task's fields read through
