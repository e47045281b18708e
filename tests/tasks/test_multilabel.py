"""The multi-label task (one file in jaxdl/tasks/): its loss equals a NumPy loop over labels, its metrics equal
counts computed outside the step, and a config naming it trains end to end through `build_experiment` and
`fit` with nothing else in jaxdl knowing the task exists."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxdl.config import default_config
from jaxdl.data.base import DatasetSplits
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.experiment.build import build_experiment
from jaxdl.tasks import get_task
from jaxdl.tasks.multilabel import multilabel_loss, multilabel_metrics
from jaxdl.training.evaluation import evaluate
from jaxdl.training.loop import fit


def _reference_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.zeros(len(logits))
    for i in range(len(logits)):
        terms = []
        for z, y in zip(logits[i], labels[i]):
            p = 1.0 / (1.0 + np.exp(-z))
            terms.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
        out[i] = np.mean(terms)
    return out


@settings(max_examples=25)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_the_loss_is_the_mean_binary_cross_entropy_over_labels(batch, labels, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (batch, labels)).astype(np.float32)
    targets = rng.integers(0, 2, (batch, labels)).astype(np.float32)
    np.testing.assert_allclose(multilabel_loss(jnp.asarray(logits), jnp.asarray(targets)),
                               _reference_loss(logits.astype(np.float64), targets), rtol=1e-4, atol=1e-5)


@settings(max_examples=25)
@given(st.integers(2, 12), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_metrics_count_label_decisions_exact_matches_and_micro_f1_over_unmasked_rows(batch, labels, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (batch, labels)).astype(np.float32)
    targets = rng.integers(0, 2, (batch, labels)).astype(np.float32)
    mask = rng.random(batch) < 0.7
    assume(mask.any())
    loss = rng.random(batch).astype(np.float32)
    values = multilabel_metrics()(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(loss), jnp.asarray(mask)).compute()
    predicted, actual = logits[mask] > 0, targets[mask] > 0.5
    tp = np.sum(predicted & actual)
    precision = tp / predicted.sum() if predicted.sum() else 0.0
    recall = tp / actual.sum() if actual.sum() else 0.0
    assert values["count"] == mask.sum()
    np.testing.assert_allclose(values["loss"], loss[mask].mean(), rtol=1e-6)
    np.testing.assert_allclose(values["accuracy"], np.mean(predicted == actual))
    np.testing.assert_allclose(values["exact_match"], np.mean(np.all(predicted == actual, axis=1)))
    np.testing.assert_allclose(values["precision"], precision)
    np.testing.assert_allclose(values["recall"], recall)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    np.testing.assert_allclose(values["f1"], f1)


def _tagged_points(n: int, seed: int) -> ArrayDataset:
    """Points in the plane with three independent tags: x > 0, y > 0, and x + y > 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 2)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x.sum(axis=1) > 1], axis=1).astype(np.float32)
    return ArrayDataset(x, y)


def test_a_config_naming_the_task_trains_it_end_to_end():
    data = DatasetSplits(_tagged_points(512, 0), _tagged_points(256, 1), _tagged_points(256, 2), 3,
                         ("right", "up", "far"), "tagged_points")
    config = default_config()
    config.model = dict(name="mlp", hidden_sizes=(32,))
    config.loss.name = "multilabel"
    config.optimizer.learning_rate = 1e-2
    config.train.strategy, config.train.num_epochs, config.data.batch_size = "jit", 8, 32
    exp = build_experiment(config, data=data)
    assert isinstance(exp.task, get_task(config.loss).__class__)
    assert exp.model.num_outputs == 3  # sized from the data by the task's defaults
    before = evaluate(exp.parallel.put_state(jax.tree.map(jnp.copy, exp.state)), exp.eval_step, data.validation, 256,
                      exp.parallel)
    result = fit(exp.state, train_step=exp.train_step, eval_step=exp.eval_step, train_data=data.train, batch_size=32,
                 num_epochs=8, validation_data=data.validation, progress=False, parallel=exp.parallel)
    after = result.summary["validation"]
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.9 and after["exact_match"] > 0.75
