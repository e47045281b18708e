"""U-Net: logits keep the input's size for any size its levels divide, and a clear error otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.models import create_model


@given(batch=st.integers(1, 3), levels=st.integers(1, 4), height=st.integers(1, 40), width=st.integers(1, 40),
       channels=st.integers(1, 3), classes=st.integers(2, 5), upsample=st.sampled_from(["transpose", "resize"]))
def test_logits_have_the_input_size_or_a_clear_error(batch, levels, height, width, channels, classes, upsample):
    model = create_model("unet", num_classes=classes, widths=tuple(4 * 2 ** i for i in range(levels)), upsample=upsample)
    x = jnp.zeros((batch, height, width, channels))
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
        with pytest.raises(ValueError, match=f"divisible by {factor}"):
            jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
        return
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (batch, height, width, classes)


def test_skip_connections_carry_detail_the_bottleneck_cannot():
    # Two inputs that differ in one pixel: the logits differ at that pixel even if the bottleneck is zeroed.
    model = create_model("unet", num_classes=2, widths=(4, 8), batch_norm=False)
    x = jnp.zeros((1, 8, 8, 1))
    y = x.at[0, 3, 5, 0].set(1.0)
    variables = model.init(jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if "ConvBlock_1" in jax.tree_util.keystr(path) else v, variables["params"])
    difference = np.abs(np.asarray(model.apply({"params": params}, y) - model.apply({"params": params}, x))).sum(-1)[0]
    assert difference[3, 5] > 0


def test_unknown_upsampling_is_explained():
    with pytest.raises(ValueError, match="valid ones are"):
        create_model("unet", upsample="nearest").init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
