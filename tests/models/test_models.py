import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.models import available_models, create_model


@given(batch=st.integers(1, 4), features=st.integers(1, 20), outputs=st.integers(2, 12),
       hidden=st.lists(st.integers(1, 16), min_size=0, max_size=3), batch_norm=st.booleans())
def test_mlp_output_shape(batch, features, outputs, hidden, batch_norm):
    model = create_model("mlp", hidden_sizes=tuple(hidden), num_outputs=outputs, batch_norm=batch_norm, dropout_rate=0.5)
    x = jnp.ones((batch, features))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (batch, outputs)
    out, _ = jax.eval_shape(lambda v: model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)},
                                                   mutable=["batch_stats"]), variables)
    assert out.shape == (batch, outputs)


@given(size=st.integers(4, 20), channels=st.integers(1, 3), blocks=st.integers(1, 3), padding=st.sampled_from(["SAME", "VALID"]),
       pool=st.sampled_from(["max", "avg"]))
def test_convnet_output_shape_or_a_clear_error(size, channels, blocks, padding, pool):
    model = create_model("convnet", channels=(4,) * blocks, padding=padding, pool=pool, num_outputs=7, dense=(8,))
    x = jnp.ones((2, size, size, channels))
    h = size
    for _ in range(blocks):
        h = (h - 2 if padding == "VALID" else h) // 2
    if h < 1:
        with pytest.raises(ValueError, match="shrinks|smaller than the kernel"):
            jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
        return
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (2, 7)


@pytest.mark.parametrize("name, shape", [("lenet5", (28, 28, 1)), ("vgg_small", (28, 28, 1)), ("vgg11", (32, 32, 3))])
def test_named_cnns_produce_logits(name, shape):
    kwargs = {"num_outputs": 10}
    if name == "vgg11":
        kwargs.update(dense=(16,))
    model = create_model(name, **kwargs)
    x = jnp.ones((2,) + shape)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (2, 10)


def test_unknown_model_and_hyperparameter_are_explained():
    with pytest.raises(ValueError, match="valid names are .*convnet"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="no hyperparameter.*'hiden_sizes'.*valid ones are .*hidden_sizes"):
        create_model("mlp", hiden_sizes=(3,))
    assert {"mlp", "lenet5", "convnet", "vgg16"} <= set(available_models())


def test_vgg_rejects_images_too_small_for_its_stages():
    model = create_model("vgg16", num_outputs=10)
    with pytest.raises(ValueError, match="too small"):
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 3))))
