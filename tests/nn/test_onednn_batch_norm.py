"""oneDNN's batch normalisation (jaxdl.nn.lowering.onednn.batch_norm) against a NumPy-style reference and
flax's BatchNorm: values, statistics and every gradient for random shapes, under jit, vmap and a device mesh."""

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


def reference(x, scale, shift, epsilon):
    """Batch statistics over every axis but the last (two-pass variance), then the affine normalisation."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    channels = (1,) * (x.ndim - 1) + (-1,)
    y = (x - mean) / jnp.sqrt(var + epsilon) * scale.reshape(channels) + shift.reshape(channels)
    return y, mean.reshape(-1), var.reshape(-1)


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).flatmap(
    lambda lead: st.tuples(st.just(tuple(lead)), st.integers(1, 7), st.integers(0, 2**16),
                           st.sampled_from([1e-5, 1e-3, 0.1])))


def operands(lead, channels, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, channels)) * rng.uniform(0.5, 3, channels) + rng.uniform(-2, 2, channels)
    scale, shift = rng.uniform(0.5, 2, channels), rng.standard_normal(channels)
    return tuple(jnp.asarray(a, jnp.float32) for a in (x, scale, shift))


def close(a, b, tolerance=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tolerance, atol=tolerance)


@needs_onednn
@settings(max_examples=6)  # each example compiles three programs
@given(shapes)
def test_outputs_statistics_and_every_gradient_equal_the_reference(case):
    """Cotangents on the output and on both statistics: the statistics' own gradients are part of the VJP."""
    lead, channels, seed, epsilon = case
    x, scale, shift = operands(lead, channels, seed)
    got, vjp = jax.vjp(jax.jit(lambda *a: onednn_bn.normalize(*a, epsilon)), x, scale, shift)
    want, vjp_ref = jax.vjp(lambda *a: reference(*a, epsilon), x, scale, shift)
    for a, b in zip(got, want):
        close(a, b)
    rng = np.random.default_rng(seed + 1)
    cotangents = tuple(jnp.asarray(rng.standard_normal(a.shape), jnp.float32) for a in want)
    for a, b in zip(jax.jit(vjp)(cotangents), vjp_ref(cotangents)):
        close(a, b, 1e-4 * max(1, int(np.prod(lead))) ** 0.5)


@needs_onednn
@settings(max_examples=3)  # each example compiles a program per trial
@given(shapes, st.integers(1, 3))
def test_vmapped_trials_have_statistics_of_their_own(case, trials):
    lead, channels, seed, epsilon = case
    batches = [operands(lead, channels, seed + t) for t in range(trials)]
    xs, scales, shifts = (jnp.stack(parts) for parts in zip(*batches))

    def loss(x, scale, shift):
        y, mean, var = onednn_bn.normalize(x, scale, shift, epsilon)
        return jnp.sum(jnp.sin(y)) + jnp.sum(mean * var)

    values, grads = jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2)))(xs, scales, shifts)
    for t in range(trials):
        value, grad = jax.value_and_grad(loss, argnums=(0, 1, 2))(xs[t], scales[t], shifts[t])
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
def test_a_batch_split_across_a_mesh_gets_the_whole_batchs_statistics():
    """Each device sums its rows and the devices add the sums: the global batch's statistics, no all-gather."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    x, scale, shift = operands((16, 3, 3), 5, 11)
    batch = NamedSharding(mesh, PartitionSpec("data"))

    def loss(x, scale, shift):
        y, mean, var = onednn_bn.normalize(x, scale, shift, 1e-5)
        return jnp.sum(jnp.sin(y)) + jnp.sum(mean) + jnp.sum(var)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), in_shardings=(batch, None, None))
    compiled = step.lower(jax.device_put(x, batch), scale, shift).compile()
    text = compiled.as_text()
    assert "all-gather" not in text and "all-reduce" in text
    got = compiled(jax.device_put(x, batch), scale, shift)
    want = jax.value_and_grad(lambda *a: jnp.sum(jnp.sin(reference(*a, 1e-5)[0])) + jnp.sum(
        reference(*a, 1e-5)[1]) + jnp.sum(reference(*a, 1e-5)[2]), argnums=(0, 1, 2))(x, scale, shift)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e-4)
    assert got[1][0].sharding.spec == PartitionSpec("data")
    # A batch that is not split runs oneDNN on each device.
    replicated = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(x, scale, shift).compile().as_text()
    assert re.search("jaxdl_onednn_batch_norm_backward", replicated)


def test_other_dtypes_are_not_offered_to_onednn():
    assert not onednn_bn.supports(jnp.ones((4, 3), jnp.bfloat16))
    assert not onednn_bn.supports(jnp.ones((3,), jnp.float32))
