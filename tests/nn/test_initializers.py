import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.initializers import available_initializers, get_initializer

VARIANCE = {  # the published scaling rules (Glorot & Bengio 2010, He et al. 2015, LeCun et al. 1998)
    "xavier": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
    "glorot": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
    "he": lambda fan_in, fan_out: 2.0 / fan_in,
    "kaiming": lambda fan_in, fan_out: 2.0 / fan_in,
    "lecun": lambda fan_in, fan_out: 1.0 / fan_in,
}


@pytest.mark.parametrize("name", [n for n in available_initializers() if n != "zeros"])
@settings(max_examples=4)
@given(fan_in=st.integers(64, 400), fan_out=st.integers(64, 400), seed=st.integers(0, 2**31 - 1))
def test_initializer_variance_matches_formula(name, fan_in, fan_out, seed):
    w = np.asarray(get_initializer(name)(jax.random.PRNGKey(seed), (fan_in, fan_out)))
    expected = VARIANCE[name.split("_")[0]](fan_in, fan_out)
    # With >= 4096 draws the sample variance is within ~7% of the truth at 3 standard errors.
    assert abs(w.var() / expected - 1) < 0.1
    assert abs(w.mean()) < 4 * np.sqrt(expected / w.size)
    if name.endswith("uniform"):
        assert np.abs(w).max() <= np.sqrt(3 * expected) + 1e-6


def test_conv_kernels_use_receptive_field_fans():
    w = np.asarray(get_initializer("he_normal")(jax.random.PRNGKey(0), (3, 3, 64, 64)))
    assert abs(w.var() / (2.0 / (3 * 3 * 64)) - 1) < 0.1


def test_unknown_initializer_lists_valid_names():
    with pytest.raises(ValueError, match="he_normal"):
        get_initializer("orthogonal_magic")
