"""oneDNN's LSTM layer (jaxdl.nn.lowering.onednn.recurrent) against the scanned LSTMCell: outputs, final
carries and every gradient, for random sizes, lengths (padding included), directions and initial carries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn import lowering
from jaxdl.nn.lowering.onednn import library
from jaxdl.nn.recurrent import RNN, StackedRNN, make_cell

needs_onednn = pytest.mark.skipif(not library.available(), reason=f"oneDNN unavailable: {library.unavailable_reason()}")


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def value_and_grads(model, variables, x, lengths, carry):
    def loss(variables, x, carry):
        final, y = model.apply(variables, x, lengths, carry)
        return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(leaf)) for leaf in jax.tree.leaves(final)), (final, y)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(variables, x, carry)


@needs_onednn
@settings(max_examples=6)  # each example compiles two programs
@given(batch=st.integers(1, 4), time=st.integers(1, 8), features=st.integers(1, 5), hidden=st.integers(1, 6),
       reverse=st.booleans(), given_carry=st.booleans(), padded=st.booleans(), seed=st.integers(0, 2**16))
def test_lstm_layer_equals_the_scanned_cell_with_padding_directions_and_carries(batch, time, features, hidden,
                                                                                reverse, given_carry, padded, seed):
    """With lengths (padding, lengths of 0 included) and without (every sequence runs every step)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, time, features)), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, time + 1, batch), jnp.int32) if padded else None
    model = RNN(make_cell("lstm", hidden), reverse=reverse)
    variables = model.init(jax.random.PRNGKey(seed), x, lengths)
    carry = tuple(jnp.asarray(rng.standard_normal((batch, hidden)), jnp.float32) for _ in range(2)) if given_carry \
        else model.cell.initial_carry(batch)
    got = value_and_grads(model, variables, x, lengths, carry)
    with lowering.use("xla"):
        want = value_and_grads(model, variables, x, lengths, carry)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b)


@needs_onednn
def test_default_lowering_runs_onednn_and_xla_keeps_the_scan():
    x, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
    model = StackedRNN("lstm", 4, num_layers=2, bidirectional=True)
    variables = model.init(jax.random.PRNGKey(0), x, lengths)
    def grad_jaxpr():  # a new function each time: a traced function's jaxpr is cached with its lowering
        return str(jax.make_jaxpr(jax.grad(lambda v: jnp.sum(model.apply(v, x, lengths)[1] ** 2)))(variables))
    assert grad_jaxpr().count("jaxdl_onednn_lstm_backward") == 4  # 2 layers x 2 directions
    with lowering.use("xla"):
        assert "jaxdl_onednn" not in grad_jaxpr()


@needs_onednn
def test_vmapped_trials_of_an_lstm_equal_each_trial_alone():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((3, 6, 2)), jnp.float32)
    lengths = jnp.array([6, 3, 1], jnp.int32)
    model = RNN(make_cell("lstm", 5))
    trials = jax.vmap(lambda key: model.init(key, x, lengths))(jax.random.split(jax.random.PRNGKey(0), 3))
    loss = lambda v: jnp.sum(model.apply(v, x, lengths)[1] ** 2)  # noqa: E731
    batched = jax.jit(jax.vmap(jax.value_and_grad(loss)))(trials)
    for t in range(3):
        alone = jax.value_and_grad(loss)(jax.tree.map(lambda v: v[t], trials))
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.tree.map(lambda v: v[t], batched))):
            close(a, b)
