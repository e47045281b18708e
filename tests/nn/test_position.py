import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.nn.position import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    make_positional_encoding,
    sinusoidal_table,
)


@given(length=st.integers(1, 20), features=st.integers(1, 12))
def test_sinusoidal_table_equals_the_formula_entry_by_entry(length, features):
    table = sinusoidal_table(length, features)
    for pos in range(length):
        for j in range(features):
            angle = pos / 10000 ** ((j - j % 2) / features)
            assert math.isclose(table[pos, j], math.sin(angle) if j % 2 == 0 else math.cos(angle), abs_tol=1e-5)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_encodings_add_per_position_vectors_and_reject_sequences_longer_than_the_table(cls):
    module = cls(max_length=6)
    x = jnp.zeros((2, 6, 4))
    variables = module.init(jax.random.PRNGKey(0), x)
    out = module.apply(variables, x)
    np.testing.assert_array_equal(out[0], out[1])  # the same position gets the same vector in every example
    shorter = module.apply(variables, x[:, :3])
    np.testing.assert_array_equal(shorter, out[:, :3])  # a prefix gets the table's prefix
    assert len({tuple(np.round(np.asarray(r), 6)) for r in out[0]}) == 6  # positions are distinguishable
    with pytest.raises(ValueError, match="longer than the positional table"):
        module.apply(variables, jnp.zeros((2, 7, 4)))


def test_unknown_encoding_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="learned"):
        make_positional_encoding("rotary", 8)
