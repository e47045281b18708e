import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.attention import (
    MultiHeadAttention,
    causal_mask,
    combine_masks,
    padding_mask,
    scaled_dot_product_attention,
)


def numpy_attention(q, k, v, mask):
    """softmax(Q K^T / sqrt(d_k)) V, written out with explicit loops over batch, head and query."""
    batch, heads, queries, depth = q.shape
    out = np.zeros(q.shape[:3] + (v.shape[-1],))
    weights = np.zeros((batch, heads, queries, k.shape[2]))
    for b in range(batch):
        for h in range(heads):
            for i in range(queries):
                allowed = np.broadcast_to(mask, (batch, heads, queries, k.shape[2]))[b, h, i]
                if not allowed.any():
                    continue
                scores = np.array([q[b, h, i] @ k[b, h, j] / np.sqrt(depth) for j in range(k.shape[2])])
                scores = np.where(allowed, scores, -np.inf)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                weights[b, h, i] = w
                out[b, h, i] = w @ v[b, h]
    return out, weights


@settings(max_examples=10)
@given(batch=st.integers(1, 3), heads=st.integers(1, 3), queries=st.integers(1, 5), keys=st.integers(1, 6),
       depth=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_attention_equals_numpy_formula_and_masked_keys_get_zero_weight(batch, heads, queries, keys, depth, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(batch, heads, n, depth)).astype(np.float32) for n in (queries, keys, keys))
    mask = rng.random((batch, 1, queries, keys)) < 0.7
    out, weights = scaled_dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask))
    ref_out, ref_weights = numpy_attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask)
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-4, atol=1e-6)
    full = np.broadcast_to(mask, weights.shape)
    assert np.all(np.asarray(weights)[~full] == 0.0)  # exactly zero, not merely small
    rows = np.asarray(weights).sum(-1)
    np.testing.assert_allclose(rows[full.any(-1)], 1.0, rtol=1e-5)


@settings(max_examples=15)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(0, 2**16))
def test_combined_causal_and_padding_mask_allows_exactly_earlier_real_keys(batch, length, seed):
    valid = np.random.default_rng(seed).random((batch, length)) < 0.7
    mask = np.broadcast_to(combine_masks(causal_mask(length), None, padding_mask(jnp.asarray(valid))),
                           (batch, 1, length, length))
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                assert mask[b, 0, i, j] == (j <= i and valid[b, j])
    assert combine_masks(None, None) is None


@pytest.mark.parametrize("shape", [(2, 1, 4), (2, 1, 3, 5), (3, 1, 1, 4)])
def test_a_mask_of_the_wrong_shape_fails_clearly(shape):
    q = jnp.zeros((2, 2, 3, 4))
    with pytest.raises(ValueError, match="does not broadcast to"):
        scaled_dot_product_attention(q, q[:, :, :, :], q, jnp.ones(shape, bool))


def test_a_non_boolean_mask_fails_clearly():
    q = jnp.zeros((1, 1, 2, 3))
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, q, q, jnp.ones((1, 1, 2, 2), jnp.float32))


@settings(max_examples=6)
@given(heads=st.sampled_from([1, 2, 4]), tq=st.integers(1, 5), tk=st.integers(1, 5), seed=st.integers(0, 1000))
def test_multi_head_attention_equals_per_head_numpy_reference(heads, tq, tk, seed):
    rng = np.random.default_rng(seed)
    features = 8
    xq = rng.normal(size=(2, tq, features)).astype(np.float32)
    xkv = rng.normal(size=(2, tk, features)).astype(np.float32)
    mask = np.ones((2, 1, tq, tk), bool)
    mask[1, :, :, tk - 1:] = tk == 1  # the second example's last key is padding (unless it is the only key)
    mha = MultiHeadAttention(heads)
    variables = mha.init(jax.random.PRNGKey(seed), jnp.asarray(xq), jnp.asarray(xkv), jnp.asarray(mask))
    out = mha.apply(variables, jnp.asarray(xq), jnp.asarray(xkv), jnp.asarray(mask))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    proj = lambda x, n: (np.einsum("btf,fhd->bhtd", x, p[n]["kernel"]) + p[n]["bias"][None, :, None, :])  # noqa: E731
    heads_out, _ = numpy_attention(proj(xq, "query"), proj(xkv, "key"), proj(xkv, "value"), mask)
    expected = np.einsum("bhtd,hdf->btf", heads_out, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_attention_dropout_only_in_training_and_keyed_by_the_dropout_rng():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 8)), jnp.float32)
    mha = MultiHeadAttention(2, dropout_rate=0.5)
    variables = mha.init(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(mha.apply(variables, x), mha.apply(variables, x, train=False))
    a = mha.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    b = mha.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.allclose(a, b) and not np.allclose(a, mha.apply(variables, x))


def test_features_not_divisible_by_heads_fail_clearly():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(3).init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 8)))
