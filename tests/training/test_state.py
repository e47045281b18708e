"""Initial states: a run that starts from given weights initialises exactly the rest, as a fresh run would."""

import jax
import numpy as np
import optax
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.models import ConvNet
from jaxdl.training.state import abstract_variables, create_train_state, initialise_missing


def _model():
    return ConvNet(channels=(4,), dense=(8,), num_outputs=3, batch_norm=True)  # params and batch_stats


@settings(max_examples=4)  # each example compiles two initialisations
@given(st.integers(0, 2**16), st.data())
def test_missing_leaves_get_a_fresh_runs_values_and_given_ones_are_kept(seed, data):
    model, x = _model(), np.zeros((1, 8, 8, 1), np.float32)
    fresh = jax.tree.leaves(create_train_state(model, optax.sgd(0.1), x, seed).variables())
    abstract, tree = jax.tree.flatten(abstract_variables(model, x))
    assert [(a.shape, a.dtype) for a in abstract] == [(np.shape(f), f.dtype) for f in fresh]
    given_at = data.draw(st.sets(st.integers(0, len(abstract) - 1)))
    own = {i: np.full(abstract[i].shape, 7.0, abstract[i].dtype) for i in given_at}
    filled = jax.tree.leaves(initialise_missing(model, x, seed, jax.tree.unflatten(tree, [
        own.get(i, a) for i, a in enumerate(abstract)])))
    for i, (value, reference) in enumerate(zip(filled, fresh)):
        np.testing.assert_array_equal(value, own[i] if i in own else reference)


def test_nothing_runs_when_every_leaf_is_given():
    model, x = _model(), np.zeros((1, 8, 8, 1), np.float32)
    leaves, tree = jax.tree.flatten(abstract_variables(model, x))
    given_leaves = [np.ones(a.shape, a.dtype) for a in leaves]
    filled = jax.tree.leaves(initialise_missing(model, x, 0, jax.tree.unflatten(tree, given_leaves)))
    assert all(a is b for a, b in zip(filled, given_leaves))
