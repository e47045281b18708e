"""`Conv1D` computes what `flax.linen.Conv` with a one-element kernel computes, for every padding form."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn import Conv1D


@settings(max_examples=6)
@given(st.integers(1, 3), st.integers(6, 20), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 2),
       st.sampled_from(["SAME", "VALID", "CAUSAL", "CIRCULAR", "REFLECT", 2, ((1, 3),)]), st.integers(0, 1000))
def test_conv1d_equals_flax_conv_with_one_kernel_axis(batch, time, channels, width, stride, dilation, padding, seed):
    x = jax.random.normal(jax.random.PRNGKey(seed), (batch, time, channels))
    ours = Conv1D(4, width, strides=stride, padding=padding, dilation=dilation)
    flax_padding = [tuple(p) for p in padding] if isinstance(padding, tuple) else padding
    theirs = nn.Conv(4, (width,), strides=stride, padding=flax_padding, kernel_dilation=dilation)
    variables = ours.init(jax.random.PRNGKey(seed + 1), x)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, theirs.init(jax.random.PRNGKey(0), x))
    np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=2e-5, atol=2e-5)


def test_a_bad_padding_or_kernel_is_refused_naming_the_valid_forms():
    x = np.zeros((1, 8, 2), np.float32)
    with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID', 'CAUSAL'"):
        Conv1D(3, padding="FULL").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="kernel_size is an int or one int"):
        Conv1D(3, kernel_size=(3, 3)).init(jax.random.PRNGKey(0), x)
