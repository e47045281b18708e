import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn.recurrent import CELLS, RNN


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def numpy_loop(kind, p, x):
    """The cell equations, one time step at a time, in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p["cell"])
    batch, time, _ = x.shape
    hidden = p["recurrent"]["kernel"].shape[0]
    h, c, outputs = np.zeros((batch, hidden)), np.zeros((batch, hidden)), []
    for t in range(time):
        xt = x[:, t]
        if kind == "rnn":  # h_t = tanh(W_h h_{t-1} + W_x x_t + b)
            h = np.tanh(h @ p["recurrent"]["kernel"] + xt @ p["input"]["kernel"] + p["input"]["bias"])
        elif kind == "lstm":
            gates = xt @ p["input"]["kernel"] + p["input"]["bias"] + h @ p["recurrent"]["kernel"]
            i, f, g, o = np.split(gates, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:  # gru
            xr, xz, xn = np.split(xt @ p["input"]["kernel"] + p["input"]["bias"], 3, axis=-1)
            hr, hz, hn = np.split(h @ p["recurrent"]["kernel"] + p["recurrent"]["bias"], 3, axis=-1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            h = (1 - z) * np.tanh(xn + r * hn) + z * h
        outputs.append(h)
    return np.stack(outputs, axis=1)


@pytest.mark.parametrize("kind", sorted(CELLS))
@settings(max_examples=4)
@given(batch=st.integers(1, 3), time=st.integers(1, 9), features=st.integers(1, 4), hidden=st.integers(1, 6),
       seed=st.integers(0, 1000))
def test_scanned_cell_equals_numpy_step_by_step_loop(kind, batch, time, features, hidden, seed):
    x = np.random.default_rng(seed).normal(size=(batch, time, features)).astype(np.float32)
    model = RNN(CELLS[kind](hidden))
    variables = model.init(jax.random.PRNGKey(seed), jnp.asarray(x))
    _, outputs = model.apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(outputs, numpy_loop(kind, variables["params"], x.astype(np.float64)), rtol=1e-4, atol=1e-5)


def _padded_sequences(lengths, seed, time, features):
    """Random inputs ``[len(lengths), time, features]`` and their lengths as int32."""
    x = np.random.default_rng(seed).normal(size=(len(lengths), time, features)).astype(np.float32)
    return x, np.asarray(lengths, np.int32)


_SHARED = {kind: RNN(CELLS[kind](4)) for kind in CELLS}
_APPLY = {kind: jax.jit(m.apply) for kind, m in _SHARED.items()}
_VARIABLES = {kind: m.init(jax.random.PRNGKey(0), jnp.zeros((3, 10, 2)), jnp.array([10, 1, 5])) for kind, m in _SHARED.items()}


@pytest.mark.parametrize("kind", sorted(CELLS))
@settings(max_examples=6)
@given(lengths=st.lists(st.integers(1, 10), min_size=3, max_size=3), seed=st.integers(0, 1000))
def test_padding_after_each_length_changes_nothing(kind, lengths, seed):
    rng = np.random.default_rng(seed + 1)
    x, lengths = _padded_sequences(lengths, seed, 10, 2)
    garbage = x.copy()
    for b, n in enumerate(lengths):
        garbage[b, n:] = rng.normal(size=(10 - n, 2)) * 100
    carry_a, out_a = _APPLY[kind](_VARIABLES[kind], jnp.asarray(x), jnp.asarray(lengths))
    carry_b, out_b = _APPLY[kind](_VARIABLES[kind], jnp.asarray(garbage), jnp.asarray(lengths))
    jax.tree.map(np.testing.assert_array_equal, carry_a, carry_b)
    np.testing.assert_array_equal(out_a, out_b)
    # The final carry is the state at each sequence's true end: run each sequence alone, unpadded.
    for b, n in enumerate(lengths):
        _, alone = _APPLY[kind](_VARIABLES[kind], jnp.asarray(x[b:b + 1, :n]), jnp.array([n]))
        final_h = carry_a[1] if kind == "lstm" else carry_a
        np.testing.assert_allclose(final_h[b], alone[0, -1], rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(out_a[b, n:]) == 0)


@settings(max_examples=6)
@given(lengths=st.lists(st.integers(1, 10), min_size=3, max_size=3), seed=st.integers(0, 1000))
def test_reverse_equals_forward_on_each_reversed_sequence(lengths, seed):
    x, lengths = _padded_sequences(lengths, seed, 10, 2)
    forward, backward = RNN(CELLS["gru"](4)), RNN(CELLS["gru"](4), reverse=True)
    variables = _VARIABLES["gru"]
    _, out_back = backward.apply(variables, jnp.asarray(x), jnp.asarray(lengths))
    for b, n in enumerate(lengths):
        _, out_fwd = forward.apply(variables, jnp.asarray(x[b:b + 1, :n][:, ::-1]))
        np.testing.assert_allclose(out_back[b, :n], np.asarray(out_fwd[0])[::-1], rtol=1e-5, atol=1e-6)


def test_bad_shapes_are_explained():
    model = RNN(CELLS["lstm"](3))
    with pytest.raises(ValueError, match=r"\[batch, time, features\]"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 5, 1)), jnp.array([5, 5, 5]))


@settings(max_examples=4)
@given(lengths=st.lists(st.integers(1, 8), min_size=2, max_size=2), seed=st.integers(0, 1000))
def test_bidirectional_is_forward_plus_forward_on_the_reversed_sequence(lengths, seed):
    from jaxdl.nn.recurrent import Bidirectional, make_cell

    x, lengths = _padded_sequences(lengths, seed, 8, 3)
    model = Bidirectional(make_cell("lstm", 4), make_cell("lstm", 4))
    variables = model.init(jax.random.PRNGKey(seed), jnp.asarray(x), jnp.asarray(lengths))
    _, out = model.apply(variables, jnp.asarray(x), jnp.asarray(lengths))
    single = RNN(make_cell("lstm", 4))
    for b, n in enumerate(lengths):
        seq = jnp.asarray(x[b:b + 1, :n])
        _, fwd = single.apply({"params": variables["params"]["forward"]}, seq)
        _, bwd = single.apply({"params": variables["params"]["backward"]}, seq[:, ::-1])
        np.testing.assert_allclose(out[b, :n, :4], fwd[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[b, :n, 4:], np.asarray(bwd[0])[::-1], rtol=1e-5, atol=1e-6)


def test_stacked_layers_compose_and_dropout_acts_only_in_training():
    from jaxdl.nn.recurrent import StackedRNN, make_cell

    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32))
    stack = StackedRNN("gru", hidden_size=5, num_layers=2, dropout_rate=0.5)
    variables = stack.init(jax.random.PRNGKey(0), x)
    _, out = stack.apply(variables, x)
    layer = RNN(make_cell("gru", 5))
    _, first = layer.apply({"params": variables["params"]["layer_0"]}, x)
    _, second = layer.apply({"params": variables["params"]["layer_1"]}, first)
    np.testing.assert_allclose(out, second, rtol=1e-5, atol=1e-6)  # inference: no dropout
    train = lambda key: stack.apply(variables, x, train=True, rngs={"dropout": key})[1]  # noqa: E731
    assert not np.allclose(train(jax.random.PRNGKey(1)), out)
    assert not np.allclose(train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(train(jax.random.PRNGKey(1)), train(jax.random.PRNGKey(1)))
    with pytest.raises(ValueError, match="valid names are .*gru"):
        make_cell("transformer", 4)
