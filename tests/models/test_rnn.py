import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.models import create_model
from jaxdl.models.rnn import recursive_forecast, series_features


@settings(max_examples=6)
@given(batch=st.integers(1, 3), time=st.integers(1, 8), cell=st.sampled_from(["rnn", "lstm", "gru"]),
       bidirectional=st.booleans(), pooling=st.sampled_from(["last", "mean", "max", "mean_max"]), outputs=st.integers(2, 5))
def test_classifier_and_tagger_shapes_for_random_sizes(batch, time, cell, bidirectional, pooling, outputs):
    ids = jnp.ones((batch, time), jnp.int32)
    clf = create_model("rnn_classifier", cell=cell, hidden_size=4, embed_dim=3, vocab_size=11, bidirectional=bidirectional,
                       pooling=pooling, num_outputs=outputs)
    assert jax.eval_shape(lambda: clf.apply(clf.init(jax.random.PRNGKey(0), ids), ids)).shape == (batch, outputs)
    tagger = create_model("rnn_tagger", cell=cell, hidden_size=4, embed_dim=3, vocab_size=11, num_outputs=outputs)
    assert jax.eval_shape(lambda: tagger.apply(tagger.init(jax.random.PRNGKey(0), ids), ids)).shape == (batch, time, outputs)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "mean_max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_output_does_not_depend_on_padding(pooling, bidirectional):
    model = create_model("rnn_classifier", cell="lstm", hidden_size=5, embed_dim=4, vocab_size=20,
                         bidirectional=bidirectional, pooling=pooling, num_layers=2)
    ids = jnp.array([[4, 5, 6, 0, 0, 0], [7, 8, 9, 10, 11, 12]])
    variables = model.init(jax.random.PRNGKey(0), ids)
    out = model.apply(variables, ids)
    np.testing.assert_allclose(model.apply(variables, ids[:1, :3]), out[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.apply(variables, jnp.pad(ids, ((0, 0), (0, 5)))), out, rtol=1e-5, atol=1e-6)


def test_series_inputs_and_token_inputs_are_told_apart_with_clear_errors():
    clf = create_model("rnn_classifier", hidden_size=4)
    with pytest.raises(ValueError, match="vocab_size is not set"):
        clf.init(jax.random.PRNGKey(0), jnp.ones((2, 5), jnp.int32))
    tokens = create_model("rnn_classifier", hidden_size=4, vocab_size=10)
    variables = tokens.init(jax.random.PRNGKey(0), jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match="outside the vocabulary of 10"):
        tokens.apply(variables, jnp.full((2, 5), 10, jnp.int32))
    with pytest.raises(ValueError, match="must be integers"):
        tokens.apply(variables, jnp.ones((2, 5), jnp.float32))


@given(time=st.integers(1, 12), stride=st.integers(1, 4), seed=st.integers(0, 100))
def test_series_features_frame_and_difference_like_a_numpy_loop(time, stride, seed):
    x = np.random.default_rng(seed).normal(size=(2, time, 1)).astype(np.float32)
    if time < stride:
        with pytest.raises(ValueError, match="shorter than frame_stride"):
            series_features(jnp.asarray(x), stride)
        return
    out = np.asarray(series_features(jnp.asarray(x), stride, differences=True, difference_scale=2.0))
    frames = np.array([[x[b, f * stride:(f + 1) * stride, 0].mean() for f in range(time // stride)] for b in range(2)])
    diffs = np.array([[0.0] + [2.0 * (row[f] - row[f - 1]) for f in range(1, len(row))] for row in frames])
    np.testing.assert_allclose(out, np.stack([frames, diffs], -1), rtol=1e-5, atol=1e-6)


def test_direct_multi_step_forecaster_and_recursive_forecast_against_a_python_loop():
    window = jnp.asarray(np.random.default_rng(0).normal(size=(3, 10)), jnp.float32)
    direct = create_model("rnn_forecaster", hidden_size=6, horizon=4)
    assert direct.apply(direct.init(jax.random.PRNGKey(0), window), window).shape == (3, 4)
    one_step = create_model("rnn_forecaster", cell="gru", hidden_size=6)
    variables = one_step.init(jax.random.PRNGKey(0), window)
    current, expected = np.asarray(window), []
    for _ in range(5):
        nxt = np.asarray(one_step.apply(variables, jnp.asarray(current)))[:, 0]
        expected.append(nxt)
        current = np.concatenate([current[:, 1:], nxt[:, None]], axis=1)
    np.testing.assert_allclose(recursive_forecast(one_step, variables, window, 5), np.stack(expected, 1), rtol=1e-5, atol=1e-6)
