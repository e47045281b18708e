import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import erf

from jaxdl.nn.activations import ACTIVATIONS, get_activation

floats = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=7),
                    elements=st.floats(-30, 30, width=32))

# The textbook formulas, written directly in NumPy (float64).
REFERENCE = {
    "relu": lambda x: np.maximum(0, x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": lambda x: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
    "leaky_relu": lambda x: np.maximum(0.01 * x, x),
    "gelu": lambda x: x * 0.5 * (1 + erf(x / np.sqrt(2))),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
@given(x=floats)
def test_activation_equals_numpy_formula(name, x):
    expected = REFERENCE[name](x.astype(np.float64))
    got = np.asarray(get_activation(name)(jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


@given(x=floats, alpha=st.floats(0.0, 0.9))
def test_leaky_relu_alpha_from_spec_string(x, alpha):
    fn = get_activation(f"leaky_relu(alpha={alpha!r})")
    np.testing.assert_allclose(np.asarray(fn(jnp.asarray(x))), np.maximum(alpha * x, x), rtol=1e-6, atol=1e-6)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=3, max_side=9), elements=st.floats(-1e4, 1e4, width=32)))
def test_softmax_rows_are_distributions_even_for_huge_logits(x):
    p = np.asarray(get_activation("softmax")(jnp.asarray(x)))
    assert np.all(p >= 0) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


def test_approximate_gelu_is_close_to_exact():
    x = jnp.linspace(-6, 6, 101)
    np.testing.assert_allclose(get_activation("gelu(approximate=true)")(x), get_activation("gelu")(x), atol=2e-3)


def test_every_registered_activation_has_a_reference():
    assert set(ACTIVATIONS) - {"linear"} == set(REFERENCE)


@pytest.mark.parametrize("spec", ["swish", "relu6", "leaky_relu(beta=1)", "leaky_relu(0.2)"])
def test_unknown_activation_names_the_valid_ones(spec):
    with pytest.raises(ValueError, match="relu|takes|key=value"):
        get_activation(spec)


def test_gradients_are_finite_at_extremes():
    for name in ("sigmoid", "tanh", "softmax", "gelu"):
        g = jax.grad(lambda x: jnp.sum(get_activation(name)(x)))(jnp.array([-100.0, 0.0, 100.0]))
        assert np.all(np.isfinite(g)), name


_JAX_NN = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "leaky_relu": jax.nn.leaky_relu,
           "gelu": lambda x: jax.nn.gelu(x, approximate=False), "identity": lambda x: x}


@settings(max_examples=30)
@given(name=st.sampled_from(sorted(_JAX_NN)), values=st.lists(st.floats(-6, 6, width=32), min_size=1, max_size=8))
def test_values_and_gradients_equal_jax_nn_including_at_zero(name, values):
    x = jnp.asarray(values + [0.0], jnp.float32)  # 0: where ReLU's gradient is a convention (jax.nn: 0)
    ours, theirs = get_activation(name), _JAX_NN[name]
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(ours))(x), jax.vmap(jax.grad(theirs))(x), rtol=1e-5, atol=1e-6)
