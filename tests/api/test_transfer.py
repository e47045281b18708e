"""Transfer in code: a backbone under any head, the fit that starts from given weights, and the two-stage
recipe (head alone, then the top blocks at a lower rate) with its frozen parts bitwise unchanged."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict

import jaxdl as jd
from jaxdl.api.transfer import frozen_optimizer, overlay, starting_variables
from jaxdl.models import ConvNet, DenseHead
from jaxdl.training.state import create_train_state, train_state_from
from jaxdl.transfer.backbone import Backbone

FIT = dict(loss="softmax_cross_entropy", batch_size=16, progress=False)


def _digits(n=96, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % classes).astype(np.int32)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32) + y[:, None, None, None]
    return x, y


@pytest.fixture(scope="module")
def pretrained():
    """A small BatchNorm ConvNet trained on one task: the backbone of the next."""
    net = ConvNet(channels=(4, 6, 8), batch_norm=True, dense=(8,), num_outputs=4)
    run = jd.fit(net, _digits(classes=4, seed=1), epochs=1, **FIT)
    variables = {c: {k: v for k, v in tree.items() if k != "DenseHead_0"} for c, tree in run.state.variables().items()}
    return Backbone(net.clone(num_outputs=None, dense=()), variables, "image", "pretraining run",
                    head_variables=None)


def _leaves(tree, prefix=()):
    return {"/".join(map(str, k)): np.asarray(v) for k, v in flatten_dict(jax.device_get(tree)).items() if k[:len(prefix)] == prefix}


def test_the_two_stage_recipe_freezes_exactly_what_it_says(pretrained):
    model = pretrained.with_head(DenseHead((16,), num_outputs=3, dropout_rate=0.5))
    data = _digits()
    stage1 = jd.fit(model, data, epochs=2, initial_variables=pretrained, freeze=jd.Freeze(), **FIT)
    # Stage 1: the whole backbone (weights and BatchNorm statistics) is the pretrained one, bitwise.
    for collection in ("params", "batch_stats"):
        given = _leaves(pretrained.variables[collection])
        got = _leaves(stage1.state.variables()[collection]["backbone"])
        assert given.keys() == got.keys()
        for key in given:
            np.testing.assert_array_equal(got[key], given[key], err_msg=key)
    assert stage1.summary["initial_variables"]["backbone"] == "pretraining run"
    head_before = _leaves(create_train_state(jd.as_model(model), optax.adam(1e-3), data[0][:1], 0).params["head"])
    assert any(not np.array_equal(v, head_before[k]) for k, v in _leaves(stage1.state.params["head"]).items())

    # Stage 2: the top block trains at a tenth of the rate; the blocks below it stay as stage 1 left them.
    stage2 = jd.fit(model, data, epochs=1, learning_rate=1e-4, initial_variables=stage1,
                    freeze=jd.Freeze("train_top", top_blocks=1, backbone_lr_scale=0.1), **FIT)
    before, after = _leaves(stage1.state.params["backbone"]), _leaves(stage2.state.params["backbone"])
    for key in before:
        same = np.array_equal(before[key], after[key])
        assert same == (not key.startswith("ConvBlock_2")), key
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(stage1.state.batch_stats), jax.device_get(stage2.state.batch_stats))


def test_the_lower_rate_scales_a_given_optimizers_updates_exactly():
    params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(2)}}
    grads = {"backbone": {"w": jnp.asarray([1.0, -2.0, 3.0])}, "head": {"w": jnp.asarray([0.5, 4.0])}}
    for scale in (0.1, 0.25):
        tx = frozen_optimizer(lambda rate: optax.sgd(rate), 0.2, jd.Freeze("fine_tune", backbone_lr_scale=scale), params)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["backbone"]["w"], -0.2 * scale * grads["backbone"]["w"], rtol=1e-6)
        np.testing.assert_allclose(updates["head"]["w"], -0.2 * grads["head"]["w"], rtol=1e-6)
    tx = frozen_optimizer(lambda rate: optax.sgd(rate), 0.2, jd.Freeze(), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert not np.any(np.asarray(updates["backbone"]["w"]))


def test_a_state_from_given_variables_equals_the_initialised_one():
    model = ConvNet(channels=(4,), dense=(8,), num_outputs=3, batch_norm=True)
    x = np.zeros((1, 8, 8, 1), np.float32)
    tx = optax.adam(1e-3)
    state = create_train_state(model, tx, x, seed=3)
    again = train_state_from(jax.device_get(state.variables()), tx, seed=3)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="must hold 'params'"):
        train_state_from({"batch_stats": {}}, tx)


def test_given_variables_that_do_not_fit_name_the_paths():
    reference = {"params": {"Dense_0": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}}}
    with pytest.raises(ValueError, match=r"paths the model does not have \['params/Dense_9/kernel'\]"):
        overlay(reference, {"params": {"Dense_9": {"kernel": np.zeros((4, 2))}}})
    with pytest.raises(ValueError, match=r"params/Dense_0/kernel: given \(3, 2\), model \(4, 2\)"):
        overlay(reference, {"params": {"Dense_0": {"kernel": np.zeros((3, 2))}}})
    partial, notes = starting_variables(reference, {"params": {"Dense_0": {"bias": np.ones(2)}}})
    np.testing.assert_array_equal(partial["params"]["Dense_0"]["bias"], np.ones(2))
    np.testing.assert_array_equal(partial["params"]["Dense_0"]["kernel"], np.zeros((4, 2)))
    with pytest.raises(TypeError, match="initial_variables must be a Backbone, a Run"):
        starting_variables(reference, [1, 2])


def test_freezing_a_model_without_a_backbone_is_explained():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(3)])
    with pytest.raises(ValueError, match="freeze needs a model with a 'backbone' submodule"):
        jd.fit(model, (np.ones((32, 5), np.float32), np.zeros(32, np.int32)), epochs=1, freeze=jd.Freeze(), **FIT)


def test_top_blocks_outside_the_backbone_are_refused(pretrained):
    model = pretrained.with_head(num_outputs=3)
    with pytest.raises(ValueError, match=r"needs 1 <= top_blocks <= 3 \(the backbone's blocks\), got 5"):
        jd.fit(model, _digits(), epochs=1, initial_variables=pretrained, freeze=jd.Freeze("train_top", top_blocks=5), **FIT)
