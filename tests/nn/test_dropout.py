"""jaxdl's Dropout: the keep rate, unbiasedness and independence hold; identity outside training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.dropout import Dropout, dropout_mask, keep_threshold

N = 200_001  # odd: the last word's second half is dropped


def _sigmas(count: float, n: int, p: float) -> float:
    return abs(count - n * p) / np.sqrt(n * p * (1 - p))


RATES = st.one_of(st.floats(0.0, 0.999), st.sampled_from([1e-7, 2 ** -17, 3e-5, 0.99999]))  # and the ends


@settings(max_examples=12)
@given(rate=RATES, seed=st.integers(0, 2 ** 20))
def test_the_mask_keeps_each_element_with_its_stated_probability_independently(rate, seed):
    """Kept fraction within 5 sigma of the stated keep probability (itself within 2^-17 of 1 - rate, for
    every rate in [0, 1): a rate too small for 16 bits keeps everything); the two elements decided by one
    32-bit word are independent: both kept about keep^2 of the time."""
    keep, probability = dropout_mask(jax.random.PRNGKey(seed), rate, (N,))
    keep = np.asarray(keep)
    assert keep.shape == (N,) and keep.dtype == bool
    assert abs(probability - (1 - rate)) <= 2 ** -17
    if probability == 1.0:
        assert keep.all()
        return
    assert _sigmas(keep.sum(), N, probability) < 5
    pairs = keep[: N - 1].reshape(-1, 2)
    assert _sigmas(np.sum(pairs[:, 0] & pairs[:, 1]), len(pairs), probability ** 2) < 5
    neighbours = keep[1:].reshape(-1, 2)  # across words too
    assert _sigmas(np.sum(neighbours[:, 0] & neighbours[:, 1]), len(neighbours), probability ** 2) < 5


@settings(max_examples=5)
@given(rate=st.floats(0.05, 0.9), shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_training_output_is_the_kept_inputs_over_the_keep_probability_and_its_gradient_the_mask(rate, shape, seed):
    x = jax.random.normal(jax.random.PRNGKey(seed), shape)
    rngs = {"dropout": jax.random.PRNGKey(seed + 1)}
    layer = Dropout(rate)
    y = layer.apply({}, x, deterministic=False, rngs=rngs)
    probability = keep_threshold(rate) / 2 ** 16
    kept = np.asarray(y) != 0  # the mask, read off the output (normal inputs are never exactly 0)
    np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / probability, rtol=1e-6)
    grad = jax.grad(lambda v: jnp.sum(layer.apply({}, v, deterministic=False, rngs=rngs)))(x)
    np.testing.assert_allclose(np.asarray(grad), kept / probability, rtol=1e-6)
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=False, rngs=rngs), y)  # same key, same mask


def test_the_layer_is_unbiased_and_the_identity_outside_training():
    x = jnp.ones((N,))
    y = Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
    assert abs(float(jnp.mean(y)) - 1.0) < 5 * np.sqrt(0.3 / 0.7 / N)
    assert Dropout(0.3).apply({}, x, deterministic=True) is x
    assert Dropout(0.0).apply({}, x, deterministic=False) is x
    other = Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.array_equal(y, other)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rates_outside_zero_to_one_are_refused(rate):
    with pytest.raises(ValueError, match=r"dropout rate must lie in \[0, 1\)"):
        keep_threshold(rate)


@settings(max_examples=10)
@given(axes=st.sampled_from([(0,), (1,), (2,), (0, 2), (-1,)]), rate=st.sampled_from([0.2, 0.5]), seed=st.integers(0, 2 ** 16))
def test_broadcast_dims_share_one_mask_value_along_those_axes(axes, rate, seed):
    """As `flax.linen.Dropout(broadcast_dims=...)`: the kept pattern is constant along the broadcast axes."""
    x = jnp.ones((6, 5, 4))
    y = Dropout(rate, broadcast_dims=axes).apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(seed)})
    kept = np.asarray(y != 0)
    for axis in axes:
        assert (kept == np.take(kept, [0], axis=axis)).all()
    assert set(np.unique(np.asarray(y))) <= {0.0, float(y.max())}


def test_a_broadcast_axis_outside_the_input_is_refused():
    with pytest.raises(ValueError, match="name axis 3 of an input of rank 3"):
        Dropout(0.5, broadcast_dims=(3,)).apply({}, jnp.ones((2, 2, 2)), deterministic=False,
                                                rngs={"dropout": jax.random.PRNGKey(0)})
