"""ResNets: shapes for random sizes, parameter counts of the published networks, the residual identity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.models import create_model
from jaxdl.models.resnet import BasicBlock, BottleneckBlock


def _count(variables) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))


def shapes_by_path(name: str, shape: tuple[int, ...], **kwargs):
    model = create_model(name, **kwargs)
    return model, jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))


# Published sizes: He et al. (2015), Table 6: ResNet-20 and ResNet-56 on CIFAR-10 with option-A shortcuts,
# "0.27M" and "0.85M" (269,722 and 853,018 counted layer by layer); torchvision's ImageNet ResNet-18 and
# ResNet-50: 11,689,512 and 25,557,032 (BatchNorm scale and bias counted as parameters, as here).
@pytest.mark.parametrize("name, shortcut, expected", [
    ("resnet20", "pad", 269_722), ("resnet56", "pad", 853_018),
    ("resnet18", "projection", 11_689_512), ("resnet50", "projection", 25_557_032),
])
def test_parameter_counts_match_the_published_networks(name, shortcut, expected):
    shape = (1, 32, 32, 3) if name in ("resnet20", "resnet56") else (1, 224, 224, 3)
    _, variables = shapes_by_path(name, shape, shortcut=shortcut)
    assert _count(variables) == expected


@given(batch=st.integers(1, 3), size=st.sampled_from([8, 12, 16, 32]), stages=st.integers(1, 3),
       blocks=st.integers(1, 2), block=st.sampled_from(["basic", "bottleneck"]), outputs=st.integers(1, 7))
def test_output_shape_for_random_sizes_and_depths(batch, size, stages, blocks, block, outputs):
    widths = tuple(4 * 2 ** i for i in range(stages))
    model = create_model("resnet", stage_sizes=(blocks,) * stages, widths=widths, block=block, num_outputs=outputs)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((batch, size, size, 3))))
    out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((batch, size, size, 3))), variables)
    assert out.shape == (batch, outputs)
    features = create_model("resnet", stage_sizes=(blocks,) * stages, widths=widths, block=block, num_outputs=None)
    pooled = jax.eval_shape(lambda v: features.apply(v, jnp.zeros((batch, size, size, 3))),
                            jax.eval_shape(lambda: features.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))))
    assert pooled.shape == (batch, widths[-1] * (4 if block == "bottleneck" else 1))


@settings(max_examples=4)  # each example compiles a new block
@given(seed=st.integers(0, 2 ** 16), strides=st.sampled_from([1, 2]), widen=st.booleans(),
       shortcut=st.sampled_from(["pad", "projection"]))
def test_a_block_whose_last_batchnorm_scale_is_zero_is_relu_of_its_shortcut(seed, strides, widen, shortcut):
    x = jax.random.normal(jax.random.PRNGKey(seed), (2, 8, 8, 4))
    features = 8 if widen else 4
    block = BasicBlock(features, strides, shortcut)
    variables = block.init(jax.random.PRNGKey(seed + 1), x)
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    flat["BatchNorm_1/scale"] = jnp.zeros_like(flat["BatchNorm_1/scale"])
    flat["BatchNorm_1/bias"] = jnp.zeros_like(flat["BatchNorm_1/bias"])
    params = traverse_util.unflatten_dict(flat, sep="/")
    y = np.asarray(block.apply({**variables, "params": params}, x))
    expected = np.asarray(x)[:, ::strides, ::strides, :]
    if shortcut == "pad" and (widen or strides > 1):
        expected = np.pad(expected, ((0, 0), (0, 0), (0, 0), (0, features - 4)))
    elif widen or strides > 1:  # a projection: 1x1 strided conv + BatchNorm of the input, computed by hand
        kernel = np.asarray(flat["_Shortcut_0/Conv2D_0/kernel"])[0, 0]
        projected = expected @ kernel
        stats = jax.tree.map(np.asarray, variables["batch_stats"]["_Shortcut_0"]["BatchNorm_0"])
        scale, bias = (np.asarray(flat[f"_Shortcut_0/BatchNorm_0/{n}"]) for n in ("scale", "bias"))
        expected = (projected - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * scale + bias
    np.testing.assert_allclose(y, np.maximum(expected, 0), atol=1e-5)


def test_bottleneck_widens_by_four_and_training_updates_batch_statistics():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 16))
    block = BottleneckBlock(8, strides=2)
    variables = block.init(jax.random.PRNGKey(1), x)
    y, updates = block.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.shape == (4, 4, 4, 32)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"])
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("kwargs, match", [
    (dict(block="dense"), "valid ones are"), (dict(stem="tiny"), "valid ones are"),
    (dict(stage_sizes=(1, 1), widths=(8,)), "same length"), (dict(block="bottleneck", shortcut="pad"), "projection"),
])
def test_bad_hyperparameters_are_explained(kwargs, match):
    model = create_model("resnet", **kwargs)
    with pytest.raises(ValueError, match=match):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
