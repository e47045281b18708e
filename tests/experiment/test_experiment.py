"""`build_experiment`: the model's outputs are sized from the data, a mismatch is refused before training, and
initialisation compiled for speed gives the same values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.config import default_config
from jaxdl.experiment.build import build_experiment
from jaxdl.models.cnn import ConvNet
from jaxdl.training.state import create_train_state, create_train_states, init_variables


def _shapes_config(**model):
    config = default_config()
    config.data.name = "shapes"
    config.data.image_size = 16
    config.data.train_limit, config.data.eval_limit, config.data.batch_size = 8, 4, 4
    config.model = dict(name="unet", widths=(4, 8), **model)
    config.loss.name = "cross_entropy_dice"
    config.train.strategy = "jit"
    return config


def test_a_segmentation_model_gets_one_logit_per_class_of_the_data():
    exp = build_experiment(_shapes_config())
    logits = jax.eval_shape(lambda v, x: exp.model.apply(v, x, train=False), exp.state.variables(), exp.data.train.x[:2])
    assert logits.shape == (2, 16, 16, exp.data.num_classes) and exp.data.num_classes == 4


@pytest.mark.parametrize("num_classes", [2, 5])
def test_a_model_with_the_wrong_number_of_classes_is_refused(num_classes):
    with pytest.raises(ValueError, match=f"the data has 4 classes.*outputs \\(1, 16, 16, {num_classes}\\)"):
        build_experiment(_shapes_config(num_classes=num_classes))


def test_initialisation_compiled_for_speed_gives_bitwise_the_default_compilation_values():
    # One model: the level-3 reference is the slow compilation this avoids (about 10 s even this small).
    model = ConvNet(channels=(4, 8), dense=(8,), batch_norm=True, num_outputs=3)
    rngs = {"params": jax.random.PRNGKey(3), "dropout": jax.random.PRNGKey(4)}
    sample = jnp.zeros((1, 8, 8, 1))
    fast = init_variables(model, rngs, sample, train=False)
    # Level 3, XLA's default, named explicitly: the suite itself compiles at level 1 (see conftest.py).
    default_init = jax.jit(lambda x: model.init(rngs, x, train=False)).lower(sample)
    default = default_init.compile(compiler_options={"xla_backend_optimization_level": "3"})(sample)
    assert jax.tree.structure(fast) == jax.tree.structure(default)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(default)))


@settings(max_examples=2)  # each example compiles two inits
@given(seeds=st.lists(st.integers(0, 2 ** 20), min_size=1, max_size=4), precision=st.sampled_from(["float32", "float16"]))
def test_stacked_states_from_one_vmapped_init_equal_each_seeds_own_state(seeds, precision):
    """`create_train_states` (one program over all seeds) slices bitwise into `create_train_state` per seed:
    parameters, BatchNorm statistics, optimizer state, step key, loss scale."""
    model = ConvNet(channels=(4,), dense=(8,), batch_norm=True, num_outputs=3)
    tx, sample = optax.adam(1e-3), jnp.zeros((1, 8, 8, 1))
    stacked = create_train_states(model, tx, sample, seeds, precision)
    for i, seed in enumerate(seeds):
        alone = create_train_state(model, tx, sample, seed, precision)
        assert jax.tree.structure(alone) == jax.tree.structure(stacked)
        assert all(np.array_equal(a, b[i]) for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(stacked)))
    first_of_each_seed = sorted({seed: i for i, seed in reversed(list(enumerate(seeds)))}.values())
    kernels = stacked.params["ConvBlock_0"]["Conv2D_0"]["kernel"]  # distinct seeds, distinct draws
    assert all(not np.array_equal(kernels[i], kernels[j]) for i in first_of_each_seed for j in first_of_each_seed if i < j)
