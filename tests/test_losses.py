import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.losses import (
    binary_cross_entropy,
    l1_penalty,
    l2_penalty,
    make_penalty,
    mse,
    softmax_cross_entropy,
)
from jaxdl.tasks import make_loss

sizes = st.tuples(st.integers(1, 6), st.integers(2, 6))


def np_softmax_ce(logits, onehot, eps=0.0):
    c = logits.shape[-1]
    t = (1 - eps) * onehot + eps / c
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return -(t * np.log(p)).sum(-1)


@given(size=sizes, seed=st.integers(0, 10_000))
def test_mse_equals_formula(size, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=size), rng.normal(size=size)
    np.testing.assert_allclose(mse(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)),
                               ((a - b) ** 2).mean(axis=1), rtol=1e-5)


@given(size=sizes, seed=st.integers(0, 10_000))
def test_binary_cross_entropy_equals_formula(size, seed):
    rng = np.random.default_rng(seed)
    z, y = rng.normal(size=size) * 3, rng.integers(0, 2, size=size)
    s = 1 / (1 + np.exp(-z))
    expected = (-(y * np.log(s) + (1 - y) * np.log(1 - s))).mean(axis=1)
    np.testing.assert_allclose(binary_cross_entropy(jnp.asarray(z, jnp.float32), jnp.asarray(y)), expected, rtol=1e-5, atol=1e-6)


def test_binary_cross_entropy_is_finite_for_huge_logits():
    loss = binary_cross_entropy(jnp.array([1e4, -1e4]), jnp.array([0, 1]))
    np.testing.assert_allclose(loss, [1e4, 1e4], rtol=1e-6)


@given(size=sizes, seed=st.integers(0, 10_000), eps=st.sampled_from([0.0, 0.1, 0.3]))
def test_softmax_cross_entropy_integer_and_onehot_labels_equal_formula(size, seed, eps):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=size) * 2
    labels = rng.integers(0, size[1], size=size[0])
    onehot = np.eye(size[1])[labels]
    expected = np_softmax_ce(logits, onehot, eps)
    z = jnp.asarray(logits, jnp.float32)
    np.testing.assert_allclose(softmax_cross_entropy(z, jnp.asarray(labels), eps), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(softmax_cross_entropy(z, jnp.asarray(onehot, jnp.float32), eps), expected, rtol=1e-5, atol=1e-6)


def _central_difference(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy", "softmax_cross_entropy", "label_smoothed"])
@settings(max_examples=6)
@given(size=sizes, seed=st.integers(0, 10_000))
def test_loss_gradient_matches_finite_differences(name, size, seed):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        x = rng.normal(size=size)
        if name == "mse":
            target, fn = jnp.asarray(rng.normal(size=size)), mse
        elif name == "binary_cross_entropy":
            target, fn = jnp.asarray(rng.integers(0, 2, size=size)), binary_cross_entropy
        else:
            target = jnp.asarray(rng.integers(0, size[1], size=size[0]))
            fn = make_loss({"name": "softmax_cross_entropy", "label_smoothing": 0.2 if name == "label_smoothed" else 0.0})
        loss = jax.jit(lambda z: jnp.sum(fn(z, target)))
        analytic = np.asarray(jax.grad(loss)(jnp.asarray(x)))
        numeric = _central_difference(lambda z: float(loss(jnp.asarray(z))), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_penalties_cover_only_the_chosen_subtree():
    params = {"Dense_0": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([5.0])},
              "head": {"kernel": jnp.array([[-3.0]])}}
    assert float(l1_penalty(params)) == 6.0
    assert float(l2_penalty(params)) == 14.0
    assert float(l2_penalty(params, "head/")) == 9.0
    assert float(l1_penalty(params, None)) == 11.0
    penalty = make_penalty({"l1": 0.5, "l2": 0.25, "penalty_params": "Dense_0/kernel"})
    assert float(penalty(params)) == 0.5 * 3.0 + 0.25 * 5.0
    assert make_penalty({"l1": 0.0, "l2": 0.0}) is None


def test_penalty_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="matches no parameter.*Dense_0/kernel"):
        l2_penalty({"Dense_0": {"kernel": jnp.ones(2)}}, "conv")


def test_bad_loss_configs_are_explained():
    with pytest.raises(ValueError, match="valid names"):
        make_loss({"name": "hinge"})
    with pytest.raises(ValueError, match="label_smoothing"):
        make_loss({"name": "softmax_cross_entropy", "label_smoothing": 1.5})
    with pytest.raises(ValueError, match="same shape"):
        mse(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="integer classes"):
        softmax_cross_entropy(jnp.ones((2, 3)), jnp.ones((2, 4)))


@given(batch=st.integers(1, 4), time=st.integers(1, 6), classes=st.integers(2, 5), seed=st.integers(0, 1000),
       eps=st.sampled_from([0.0, 0.1]))
def test_sequence_cross_entropy_is_the_mean_over_counted_steps_of_each_sequence(batch, time, classes, seed, eps):
    from jaxdl.losses import sequence_cross_entropy

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, time, classes)).astype(np.float32)
    labels = rng.integers(0, classes, (batch, time)).astype(np.int32)
    labels[rng.random((batch, time)) < 0.3] = -1
    # Jitted: one compilation per drawn shape instead of one per primitive in eager mode.
    got = np.asarray(jax.jit(sequence_cross_entropy, static_argnums=(2, 3))(jnp.asarray(logits), jnp.asarray(labels), -1, eps))
    for b in range(batch):
        terms = []
        for t in range(time):
            if labels[b, t] == -1:
                continue
            z = logits[b, t].astype(np.float64)
            log_p = z - np.log(np.exp(z - z.max()).sum()) - z.max()
            target = np.full(classes, eps / classes)
            target[labels[b, t]] += 1 - eps
            terms.append(-(target * log_p).sum())
        np.testing.assert_allclose(got[b], np.mean(terms) if terms else 0.0, rtol=1e-5, atol=1e-6)
    # What follows the counted steps (more ignored padding) changes nothing.
    padded = np.concatenate([labels, np.full((batch, 3), -1, np.int32)], axis=1)
    more = np.concatenate([logits, rng.normal(size=(batch, 3, classes)).astype(np.float32)], axis=1)
    np.testing.assert_allclose(sequence_cross_entropy(jnp.asarray(more), jnp.asarray(padded), -1, eps), got, rtol=1e-6)


def test_sequence_cross_entropy_rejects_mismatched_shapes_and_float_labels():
    from jaxdl.losses import sequence_cross_entropy

    with pytest.raises(ValueError, match=r"labels \[batch, time\]"):
        sequence_cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="integers"):
        sequence_cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3)))
