"""The 1-D CNN and recurrent models on real-valued series: shapes for random sizes, and padded series of
different lengths giving what each series gives alone."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.models import create_model


@settings(max_examples=4)
@given(st.integers(1, 4), st.integers(4, 40), st.integers(1, 3), st.sampled_from(["SAME", "CAUSAL"]), st.integers(1, 5))
def test_the_sequence_cnn_maps_any_series_to_its_outputs(batch, time, features, padding, outputs):
    model = create_model("cnn1d", channels=(4, 8), kernel_size=3, padding=padding, num_outputs=outputs)
    x = jnp.ones((batch, time, features)) if features > 1 else jnp.ones((batch, time))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert model.apply(variables, x, train=False).shape == (batch, outputs)


@settings(max_examples=4)  # each example compiles the model once per distinct length
@given(st.sampled_from(["rnn_classifier", "rnn_forecaster"]), st.sampled_from(["lstm", "gru", "rnn"]),
       st.lists(st.integers(1, 12), min_size=1, max_size=3), st.integers(0, 100))
def test_padded_series_of_different_lengths_give_what_each_gives_alone(name, cell, lengths, seed):
    kwargs = dict(cell=cell, hidden_size=6)
    if name == "rnn_classifier":
        kwargs.update(num_outputs=3, pooling="mean")
    model = create_model(name, **kwargs)
    rng = np.random.default_rng(seed)
    longest = max(lengths)
    series = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    padded = np.full((len(lengths), longest, 2), 99.0, np.float32)  # padding values must not matter
    for i, s in enumerate(series):
        padded[i, : len(s)] = s
    batch = {"values": jnp.asarray(padded), "lengths": jnp.asarray(lengths, jnp.int32)}
    variables = model.init(jax.random.PRNGKey(0), batch, train=False)
    together = model.apply(variables, batch, train=False)
    for i, s in enumerate(series):
        alone = model.apply(variables, {"values": jnp.asarray(s[None]), "lengths": jnp.asarray([len(s)], jnp.int32)},
                            train=False)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-5, atol=1e-5)
