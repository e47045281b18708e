import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from jaxdl.data.pipeline import ArrayDataset, eval_batches
from jaxdl.metrics import (
    ClassificationMetrics,
    RegressionMetrics,
    classification_metrics,
)


@given(n=st.integers(1, 300), classes=st.integers(2, 7), batch=st.integers(1, 64), seed=st.integers(0, 10_000))
def test_accumulated_metrics_equal_sklearn_for_any_batch_size(n, classes, batch, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    # Logits that are right about 60% of the time, so every cell of the confusion matrix is exercised.
    logits = rng.normal(size=(n, classes)).astype(np.float32)
    logits[np.arange(n), labels] += rng.random(n) < 0.6
    losses = rng.random(n).astype(np.float32)
    metrics_fn = jax.jit(classification_metrics(classes))
    total = ClassificationMetrics.empty(classes)
    data = ArrayDataset(np.concatenate([logits, losses[:, None]], axis=1), labels)
    for b in eval_batches(data, batch):
        total = total.merge(metrics_fn(jnp.asarray(b["x"][:, :-1]), jnp.asarray(b["y"]), jnp.asarray(b["x"][:, -1]),
                                       jnp.asarray(b["mask"])))
    predictions = logits.argmax(1)
    values, per = total.compute(), total.per_class()
    assert values["count"] == n
    np.testing.assert_array_equal(total.confusion, confusion_matrix(labels, predictions, labels=range(classes)))
    p, r, f, s = precision_recall_fscore_support(labels, predictions, labels=range(classes), zero_division=0)
    np.testing.assert_allclose(per["precision"], p)
    np.testing.assert_allclose(per["recall"], r)
    np.testing.assert_allclose(per["f1"], f)
    np.testing.assert_array_equal(per["support"], s)
    for average in ("macro", "micro"):
        pa, ra, fa, _ = precision_recall_fscore_support(labels, predictions, labels=range(classes), average=average,
                                                        zero_division=0)
        np.testing.assert_allclose([values[f"precision_{average}"], values[f"recall_{average}"], values[f"f1_{average}"]],
                                   [pa, ra, fa], rtol=1e-12)
    np.testing.assert_allclose(values["accuracy"], (predictions == labels).mean())
    np.testing.assert_allclose(values["loss"], losses.mean(), rtol=1e-5)


def test_binary_logit_predictions():
    fn = classification_metrics(2)
    m = fn(jnp.array([[2.0], [-1.0], [0.5]]), jnp.array([1, 1, 0]), jnp.zeros(3), None)
    np.testing.assert_array_equal(m.confusion, [[0, 1], [1, 1]])


@given(n=st.integers(1, 50), seed=st.integers(0, 1000))
def test_regression_metrics_equal_numpy(n, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    mask = rng.random(n) < 0.7
    mask[0] = True
    m = RegressionMetrics.from_batch(jnp.zeros(n), jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)).compute()
    err = (pred - target)[mask]
    np.testing.assert_allclose(m["mae"], np.abs(err).mean(), rtol=1e-5)
    np.testing.assert_allclose(m["rmse"], np.sqrt((err ** 2).mean()), rtol=1e-5)
    assert m["count"] == mask.sum()


@given(batch=st.integers(1, 6), time=st.integers(1, 5), seed=st.integers(0, 1000))
def test_sequence_metrics_count_steps_and_whole_sequences_like_numpy(batch, time, seed):
    from jaxdl.metrics import SequenceMetrics, sequence_metrics

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (batch, time)).astype(np.int32)
    labels[rng.random((batch, time)) < 0.3] = -1
    predictions = np.where(rng.random((batch, time)) < 0.7, labels, rng.integers(0, 3, (batch, time))).astype(np.int32)
    mask = rng.random(batch) < 0.8
    logits = np.eye(3, dtype=np.float32)[np.clip(predictions, 0, 2)]
    m = sequence_metrics(-1)(jnp.asarray(logits), jnp.asarray(labels), jnp.zeros(batch), jnp.asarray(mask))
    assert isinstance(m, SequenceMetrics)
    values = m.merge(m).compute()  # merging doubles every sum: the rates stay
    counted = (labels != -1) & mask[:, None]
    right = (np.clip(predictions, 0, 2) == labels) & counted
    expected_acc = right.sum() / max(counted.sum(), 1)
    exact = sum(bool(mask[b] and np.all(right[b] | ~counted[b])) for b in range(batch))
    assert values["accuracy"] == pytest.approx(expected_acc)
    assert values["exact_match"] == pytest.approx(exact / max(mask.sum(), 1))
    assert values["count"] == 2 * mask.sum()
