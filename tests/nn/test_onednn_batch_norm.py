"""oneDNN's batch normalisation (jaxdl.nn.lowering.onednn.batch_norm) against a NumPy-style reference and
flax's BatchNorm: values, statistics and every gradient for random shapes, alone, with the fused ReLU and with
the residual added before it, under jit, vmap and a device mesh."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn import lowering
from jaxdl.nn.lowering.onednn import batch_norm as onednn_bn
from jaxdl.nn.lowering.onednn import library
from jaxdl.nn.normalization import BatchNorm, batch_norm, synchronized_batch_norm

needs_onednn = pytest.mark.skipif(not library.available(), reason=f"oneDNN unavailable: {library.unavailable_reason()}")


def reference(x, scale, shift, epsilon, relu=False, residual=None):
    """Batch statistics over every axis but the last (two-pass variance), then the affine normalisation (then
    the residual added, then a ReLU)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    channels = (1,) * (x.ndim - 1) + (-1,)
    y = (x - mean) / jnp.sqrt(var + epsilon) * scale.reshape(channels) + shift.reshape(channels)
    y = y if residual is None else y + residual
    return jax.nn.relu(y) if relu else y, mean.reshape(-1), var.reshape(-1)


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).flatmap(
    lambda lead: st.tuples(st.just(tuple(lead)), st.integers(1, 7), st.integers(0, 2**16),
                           st.sampled_from([1e-5, 1e-3, 0.1])))


def operands(lead, channels, seed):
    """x, scale, shift and a residual of x's shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, channels)) * rng.uniform(0.5, 3, channels) + rng.uniform(-2, 2, channels)
    scale, shift = rng.uniform(0.5, 2, channels), rng.standard_normal(channels)
    return tuple(jnp.asarray(a, jnp.float32) for a in (x, scale, shift, rng.standard_normal(x.shape)))


fuses = st.sampled_from([(False, False), (True, False), (True, True)])  # (relu, residual)


def normalize(x, scale, shift, residual, epsilon, fuse, implementation):
    """``implementation`` (oneDNN's `normalize` or `reference`) with the drawn fuse; the residual is an argument
    either way, so that its gradient (zero where it is not added) is compared too."""
    relu, add = fuse
    return implementation(x, scale, shift, epsilon, relu, residual if add else None)


def close(a, b, tolerance=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tolerance, atol=tolerance)


@needs_onednn
@settings(max_examples=6)  # each example compiles three programs
@given(shapes, fuses)
def test_outputs_statistics_and_every_gradient_equal_the_reference(case, fuse):
    """Cotangents on the output and on both statistics: the statistics' own gradients are part of the VJP;
    with the fused ReLU the output gradient passes only where the output is positive, to the residual too."""
    lead, channels, seed, epsilon = case
    args = operands(lead, channels, seed)
    got, vjp = jax.vjp(jax.jit(lambda *a: normalize(*a, epsilon, fuse, onednn_bn.normalize)), *args)
    want, vjp_ref = jax.vjp(lambda *a: normalize(*a, epsilon, fuse, reference), *args)
    for a, b in zip(got, want):
        close(a, b)
    rng = np.random.default_rng(seed + 1)
    cotangents = tuple(jnp.asarray(rng.standard_normal(a.shape), jnp.float32) for a in want)
    for a, b in zip(jax.jit(vjp)(cotangents), vjp_ref(cotangents)):
        close(a, b, 1e-4 * max(1, int(np.prod(lead))) ** 0.5)


@needs_onednn
@settings(max_examples=3)  # each example compiles a program per trial
@given(shapes, st.integers(1, 3), fuses)
def test_vmapped_trials_have_statistics_of_their_own(case, trials, fuse):
    """Trials fold into the channels (the fused ReLU's workspace is the folded call's own)."""
    lead, channels, seed, epsilon = case
    batches = [operands(lead, channels, seed + t) for t in range(trials)]
    stacked = [jnp.stack(parts) for parts in zip(*batches)]

    def loss(*args):
        y, mean, var = normalize(*args, epsilon, fuse, onednn_bn.normalize)
        return jnp.sum(jnp.sin(y)) + jnp.sum(mean * var)

    values, grads = jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(*stacked)
    for t in range(trials):
        value, grad = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(*(a[t] for a in stacked))
        close(values[t], value, 1e-5)
        for a, b in zip(grad, grads):
            close(b[t], a, 1e-5)


def _flax_and_jaxdl(x, train=True):
    """Both BatchNorms applied to ``x`` with the same perturbed variables: (outputs, new stats, grads) each."""
    flax_bn, jaxdl_bn = (cls(use_running_average=not train, momentum=0.9) for cls in (nn.BatchNorm, BatchNorm))
    variables = flax_bn.init(jax.random.key(0), x)
    assert jax.tree.structure(variables) == jax.tree.structure(jaxdl_bn.init(jax.random.key(0), x))
    variables = jax.tree.map(lambda a: a + jax.random.uniform(jax.random.key(1), a.shape), variables)

    def run(module):
        def loss(params, x):
            y, new = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                  mutable=["batch_stats"])
            return jnp.sum(jnp.tanh(y)), (y, new)
        (_, (y, new)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(variables["params"], x)
        text = jax.jit(jax.grad(lambda p, x: loss(p, x)[0])).lower(variables["params"], x).as_text()
        return (y, new, grads), text
    return run(flax_bn), run(jaxdl_bn)


@needs_onednn
@pytest.mark.parametrize("shape", [(8, 5, 5, 4), (16, 3)])
def test_the_layer_equals_flax_batch_norm_and_runs_onednn_in_training(shape):
    x = jax.random.normal(jax.random.key(2), shape) * 3 + 1
    with lowering.use("auto", measure=False):
        (want, flax_text), (got, text) = _flax_and_jaxdl(x)
    assert onednn_bn.forward_p.name in text and onednn_bn.backward_p.name in text
    assert "jaxdl_onednn" not in flax_text
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e-4)


@needs_onednn
def test_inference_synchronised_and_xla_modes_keep_flaxs_computation():
    x = jax.random.normal(jax.random.key(3), (8, 4, 4, 3))
    with lowering.use("auto", measure=False):
        (want, _), (got, text) = _flax_and_jaxdl(x, train=False)
    assert "jaxdl_onednn" not in text
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e-6)
    with lowering.use("xla"):
        assert "jaxdl_onednn" not in _flax_and_jaxdl(x)[1][1]
    with synchronized_batch_norm("devices"):
        layer = batch_norm(True)
    assert layer.axis_name == "devices"
    variables = layer.init(jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(jax.vmap(lambda x: layer.apply(variables, x, mutable=["batch_stats"]), axis_name="devices"))(
        x[None])
    assert "jaxdl_onednn" not in str(jaxpr)


@needs_onednn
@pytest.mark.parametrize("fuse", [(False, False), (True, False), (True, True)])
def test_a_batch_split_across_a_mesh_gets_the_whole_batchs_statistics(fuse):
    """Each device sums its rows and the devices add the sums: the global batch's statistics, no all-gather
    (with the fused ReLU, XLA recomputes its mask in the backward pass)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    x, scale, shift, residual = operands((16, 3, 3), 5, 11)
    batch = NamedSharding(mesh, PartitionSpec("data"))

    def loss(implementation, *args):
        y, mean, var = normalize(*args, 1e-5, fuse, implementation)
        return jnp.sum(jnp.sin(y)) + jnp.sum(mean) + jnp.sum(var)

    grad = jax.value_and_grad(functools.partial(loss, onednn_bn.normalize), argnums=(0, 1, 2, 3))
    step = jax.jit(grad, in_shardings=(batch, None, None, batch))
    sharded = (jax.device_put(x, batch), scale, shift, jax.device_put(residual, batch))
    compiled = step.lower(*sharded).compile()
    text = compiled.as_text()
    assert "all-gather" not in text and "all-reduce" in text
    got = compiled(*sharded)
    want = jax.value_and_grad(functools.partial(loss, reference), argnums=(0, 1, 2, 3))(x, scale, shift, residual)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e-4)
    assert got[1][0].sharding.spec == PartitionSpec("data")
    # A batch that is not split runs oneDNN on each device.
    replicated = jax.jit(grad).lower(x, scale, shift, residual).compile().as_text()
    assert re.search("jaxdl_onednn_batch_norm_backward", replicated)


@needs_onednn
@pytest.mark.parametrize("with_residual", [False, True])
def test_the_layers_relu_and_residual_are_flaxs_batch_norm_then_add_then_relu(with_residual):
    """``BatchNorm(relu=True)(x, residual=r)`` is ``relu(flax BatchNorm(x) + r)``: outputs, statistics and
    gradients of the parameters, the input and the residual, all in oneDNN's call."""
    x = jax.random.normal(jax.random.key(4), (8, 5, 5, 6)) * 2 + 0.5
    residual = jax.random.normal(jax.random.key(5), x.shape) if with_residual else None
    flax_bn, layer = nn.BatchNorm(use_running_average=False), BatchNorm(use_running_average=False, relu=True)
    variables = flax_bn.init(jax.random.key(0), x)
    variables = jax.tree.map(lambda a: a + jax.random.uniform(jax.random.key(1), a.shape), variables)

    def flax_relu(variables, x, residual):
        y, new = flax_bn.apply(variables, x, mutable=["batch_stats"])
        return jax.nn.relu(y if residual is None else y + residual), new

    def loss(apply, variables, x, residual):
        y, new = apply(variables, x, residual)
        return jnp.sum(jnp.sin(y)), (y, new)
    grad = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)
    with lowering.use("auto", measure=False):
        apply = lambda v, x, r: layer.apply(v, x, residual=r, mutable=["batch_stats"])  # noqa: E731
        got = jax.jit(grad, static_argnums=0)(apply, variables, x, residual)
        text = jax.jit(jax.grad(lambda v, x, r: loss(apply, v, x, r)[0])).lower(variables, x, residual).as_text()
    want = grad(flax_relu, variables, x, residual)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e-4)
    # one call: the ReLU inside the normalisation (fuse 1), or the residual's addition too (fuse 2)
    assert f"fuse = {2 if with_residual else 1}" in text and onednn_bn.backward_p.name in text


def test_other_dtypes_are_not_offered_to_onednn():
    assert not onednn_bn.supports(jnp.ones((4, 3), jnp.bfloat16))
    assert not onednn_bn.supports(jnp.ones((3,), jnp.float32))
