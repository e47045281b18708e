"""Per-pixel losses and metrics: Dice against a NumPy loop and its invariants, IoU against scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import jaccard_score

from jaxdl.losses import cross_entropy_dice, dice_loss, soft_dice_loss, softmax_cross_entropy
from jaxdl.metrics import SegmentationMetrics, segmentation_metrics
from jaxdl.tasks import make_loss

# A few map shapes (each new shape compiles): batch, height, width, classes, seed.
maps = st.tuples(st.sampled_from([1, 3]), st.sampled_from([1, 5]), st.just(4), st.sampled_from([2, 4]), st.integers(0, 2 ** 16))


def _probabilities(rng, shape):
    return np.asarray(jax.nn.softmax(jnp.asarray(rng.normal(0, 2, shape)), axis=-1))


@given(maps)
def test_soft_dice_is_symmetric_bounded_and_zero_for_a_perfect_one_hot_prediction(dims):
    b, h, w, c, seed = dims
    rng = np.random.default_rng(seed)
    p, q = _probabilities(rng, (b, h, w, c)), _probabilities(rng, (b, h, w, c))
    np.testing.assert_allclose(soft_dice_loss(jnp.asarray(p), jnp.asarray(q)), soft_dice_loss(jnp.asarray(q), jnp.asarray(p)),
                               rtol=1e-6)
    assert np.all((np.asarray(soft_dice_loss(jnp.asarray(p), jnp.asarray(q))) >= 0)
                  & (np.asarray(soft_dice_loss(jnp.asarray(p), jnp.asarray(q))) <= 1))
    one_hot = jax.nn.one_hot(rng.integers(0, c, (b, h, w)), c)
    np.testing.assert_allclose(soft_dice_loss(one_hot, one_hot), 0.0, atol=1e-7)


@given(maps)
def test_dice_loss_equals_a_numpy_loop_over_images_and_classes(dims):
    b, h, w, c, seed = dims
    rng = np.random.default_rng(seed)
    logits, labels = rng.normal(0, 2, (b, h, w, c)).astype(np.float32), rng.integers(0, c, (b, h, w))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = []
    for i in range(b):
        scores = []
        for k in range(c):
            t = (labels[i] == k).astype(np.float64)
            scores.append((2 * np.sum(p[i, ..., k] * t) + 1) / (np.sum(p[i, ..., k]) + np.sum(t) + 1))
        expected.append(1 - np.mean(scores))
    np.testing.assert_allclose(dice_loss(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-5)
    combined = cross_entropy_dice(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(combined, np.asarray(softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))) + expected,
                               rtol=1e-5)
    assert make_loss({"name": "cross_entropy_dice"}) is cross_entropy_dice


def test_dice_rejects_labels_that_do_not_fit():
    with pytest.raises(ValueError, match="integer classes of shape"):
        dice_loss(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4, 4), jnp.float32))


@given(maps, st.integers(1, 3))
def test_iou_equals_scikit_learn_merges_by_addition_and_skips_masked_images(dims, split):
    b, h, w, c, seed = dims
    rng = np.random.default_rng(seed)
    logits, labels = rng.normal(0, 1, (b + 1, h, w, c)).astype(np.float32), rng.integers(0, c, (b + 1, h, w))
    loss = rng.random(b + 1).astype(np.float32)
    metrics_fn = jax.jit(segmentation_metrics(c))
    mask = np.arange(b + 1) < b  # the last image is padding
    whole = metrics_fn(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(loss), jnp.asarray(mask))
    cut = min(split, b)
    parts = [metrics_fn(jnp.asarray(logits[s]), jnp.asarray(labels[s]), jnp.asarray(loss[s]), jnp.asarray(mask[s]))
             for s in (slice(0, cut), slice(cut, b + 1))]
    np.testing.assert_array_equal(parts[0].merge(parts[1]).confusion, whole.confusion)
    predicted = logits[:b].argmax(-1).ravel()
    present = np.union1d(predicted, labels[:b].ravel())
    reference = jaccard_score(labels[:b].ravel(), predicted, labels=present, average=None, zero_division=0)
    result = whole.compute()
    np.testing.assert_allclose([result[f"iou_{k}"] for k in present], reference, rtol=1e-9)
    assert result["mean_iou"] == pytest.approx(reference.mean()) and result["count"] == b
    assert result["accuracy"] == pytest.approx(np.mean(predicted == labels[:b].ravel()))
    assert isinstance(whole, SegmentationMetrics)
