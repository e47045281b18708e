import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.pooling import avg_pool, max_pool


def numpy_pool(x, window, stride, reduce):
    b, h, w, c = x.shape
    oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.empty((b, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + window, j * stride:j * stride + window, :]
            out[:, i, j, :] = reduce(patch, axis=(1, 2))
    return out


@pytest.mark.parametrize("pool, reduce", [(max_pool, np.max), (avg_pool, np.mean)])
@given(h=st.integers(2, 11), w=st.integers(2, 11), window=st.integers(1, 3), stride=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_pool_equals_numpy(pool, reduce, h, w, window, stride, seed):
    window = min(window, h, w)
    x = np.random.default_rng(seed).normal(size=(2, h, w, 3)).astype(np.float32)
    got = np.asarray(pool(jnp.asarray(x), window, stride))
    np.testing.assert_allclose(got, numpy_pool(x, window, stride, reduce), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pool, generic", [
    (max_pool, lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")),
    (avg_pool, lambda x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4),
])
@settings(max_examples=6)
@given(h=st.integers(2, 9), w=st.integers(2, 9), seed=st.integers(0, 1000))
def test_tiled_fast_path_has_the_generic_gradient(pool, generic, h, w, seed):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(2, h, w, 3)).astype(np.float32))
    weights = jnp.asarray(np.random.default_rng(seed + 1).normal(size=(2, h // 2, w // 2, 3)).astype(np.float32))
    fast = jax.grad(lambda x: jnp.sum(pool(x, 2) * weights))(x)
    slow = jax.grad(lambda x: jnp.sum(generic(x) * weights))(x)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)


def test_same_padding_avg_pool_ignores_padding():
    x = jnp.ones((1, 5, 5, 1))
    np.testing.assert_allclose(avg_pool(x, 3, 1, "SAME"), 1.0)


def test_pool_rejects_non_images():
    with pytest.raises(ValueError, match="batch, height, width, channels"):
        max_pool(jnp.ones((4, 4)))
