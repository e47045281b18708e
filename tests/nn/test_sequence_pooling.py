import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.sequence_pooling import STEP_POOLINGS, pool_steps


def numpy_pool(x, valid, pooling):
    """Each sequence's real steps pooled one sequence at a time; no real steps pools to zeros."""
    out = []
    for xb, vb in zip(x, valid):
        real = xb[vb]
        mean = real.mean(0) if len(real) else np.zeros(x.shape[-1])
        maximum = real.max(0) if len(real) else np.zeros(x.shape[-1])
        out.append({"mean": mean, "max": maximum, "mean_max": np.concatenate([mean, maximum]), "first": xb[0]}[pooling])
    return np.stack(out)


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 5), st.sampled_from(STEP_POOLINGS), st.integers(0, 2**16))
def test_pooling_equals_a_per_sequence_numpy_loop_and_ignores_padding(batch, time, features, pooling, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, features)).astype(np.float32)
    valid = rng.random((batch, time)) < 0.6
    pooled = np.asarray(pool_steps(jnp.asarray(x), jnp.asarray(valid), pooling))
    np.testing.assert_allclose(pooled, numpy_pool(x, valid, pooling), rtol=1e-5, atol=1e-6)
    if pooling != "first":  # garbage in the padded steps changes nothing
        garbage = np.where(valid[..., None], x, 1e6 * rng.normal(size=x.shape)).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(pool_steps(jnp.asarray(garbage), jnp.asarray(valid), pooling)), pooled)


def test_unknown_pooling_and_a_misshapen_mask_fail_clearly():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="valid ones are"):
        pool_steps(x, jnp.ones((2, 3), bool), "median")
    with pytest.raises(ValueError, match=r"valid must be \[batch, time\]"):
        pool_steps(x, jnp.ones((2, 4), bool), "mean")
