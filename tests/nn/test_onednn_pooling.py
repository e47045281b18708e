"""oneDNN's max pooling (jaxdl.nn.lowering.onednn.pooling) against XLA's reduce_window: values and gradients
for random windows, strides and paddings, ties, vmap, and a device mesh; and jaxdl.nn.pooling's use of it."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from jaxdl.nn import lowering
from jaxdl.nn.lowering.onednn import library
from jaxdl.nn.lowering.onednn import pooling as onednn_pooling
from jaxdl.nn.pooling import max_pool

needs_onednn = pytest.mark.skipif(not library.available(), reason=f"oneDNN unavailable: {library.unavailable_reason()}")


def xla_max_pool(x, window, strides, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0)))


windows = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "height": st.integers(1, 10), "width": st.integers(1, 10), "channels": st.integers(1, 5),
    "window": st.tuples(st.integers(1, 4), st.integers(1, 4)), "strides": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
    "seed": st.integers(0, 2**16),
}).map(lambda g: {**g,  # every window must hold at least one pixel of the image: padding smaller than the window
                  "padding": tuple((min(lo, k - 1), min(hi, k - 1)) for (lo, hi), k in zip(g["padding"], g["window"])),
                  "height": max(g["height"], g["window"][0]), "width": max(g["width"], g["window"][1])})


def image(g, seed_offset=0):
    rng = np.random.default_rng(g["seed"] + seed_offset)
    return jnp.asarray(rng.standard_normal((g["batch"], g["height"], g["width"], g["channels"])), jnp.float32)


@needs_onednn
@given(windows)
def test_values_and_gradient_equal_reduce_window(g):
    """Distinct random values (no ties): the same maxima, and each gradient routed to the same pixel."""
    x, args = image(g), (g["window"], g["strides"], g["padding"])
    y_ref, vjp_ref = jax.vjp(lambda x: xla_max_pool(x, *args), x)
    y, vjp = jax.vjp(jax.jit(lambda x: onednn_pooling.max_pool(x, *args)), x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    cotangent = jnp.asarray(np.random.default_rng(g["seed"] + 1).standard_normal(y.shape), jnp.float32)
    np.testing.assert_allclose(np.asarray(jax.jit(vjp)(cotangent)[0]), np.asarray(vjp_ref(cotangent)[0]),
                               rtol=1e-6, atol=1e-6)


@needs_onednn
@settings(max_examples=5)
@given(windows)
def test_ties_send_each_windows_gradient_to_exactly_one_pixel(g):
    """A constant image ties every window: each window's gradient still lands whole on one of its pixels."""
    g = {**g, "strides": g["window"], "padding": ((0, 0), (0, 0))}  # windows that tile: each pixel in one window
    x = jnp.full((g["batch"], g["height"], g["width"], g["channels"]), 3.0)
    y, vjp = jax.vjp(lambda x: onednn_pooling.max_pool(x, g["window"], g["strides"], g["padding"]), x)
    dy = jnp.asarray(np.random.default_rng(g["seed"]).uniform(1, 2, y.shape), jnp.float32)
    dx = np.asarray(vjp(dy)[0])
    (kh, kw), (oh, ow) = g["window"], y.shape[1:3]
    tiles = dx[:, :oh * kh, :ow * kw].reshape(g["batch"], oh, kh, ow, kw, g["channels"])
    assert ((tiles != 0).sum(axis=(2, 4)) == 1).all()
    np.testing.assert_allclose(tiles.sum(axis=(2, 4)), np.asarray(dy), rtol=1e-6)
    assert not dx[:, oh * kh:].any() and not dx[:, :, ow * kw:].any()


@needs_onednn
@settings(max_examples=4)
@given(windows)
def test_vmapped_pooling_folds_into_the_batch_and_equals_each_element_alone(g):
    xs = jnp.stack([image(g, t) for t in range(3)], axis=1)  # the mapped axis in the middle
    args = (g["window"], g["strides"], g["padding"])
    loss = lambda x: jnp.sum(jnp.sin(onednn_pooling.max_pool(x, *args)))  # noqa: E731
    values, grads = jax.vmap(jax.value_and_grad(loss), in_axes=1)(xs)
    pooled = jax.vmap(lambda x: onednn_pooling.max_pool(x, *args), in_axes=1)(xs)  # inference: no workspace
    for t in range(3):
        np.testing.assert_array_equal(np.asarray(pooled[t]), np.asarray(onednn_pooling.max_pool(xs[:, t], *args)))
        value, grad = jax.value_and_grad(loss)(xs[:, t])
        np.testing.assert_allclose(values[t], value, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(grads[t]), np.asarray(grad))


@needs_onednn
def test_a_batch_sharded_max_pool_stays_local_on_a_mesh():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    x = jnp.asarray(np.random.default_rng(5).standard_normal((16, 8, 8, 3)), jnp.float32)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    args = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    step = jax.jit(jax.value_and_grad(lambda x: jnp.sum(jnp.cos(onednn_pooling.max_pool(x, *args)))),
                   in_shardings=(batch,))
    compiled = step.lower(jax.device_put(x, batch)).compile()
    text = compiled.as_text()
    assert "all-gather" not in text
    assert re.search(r"f32\[4,4,4,3\]\{[0-9,]*\}, u8\[4,[0-9]+\]\{[0-9,]*\}\) custom-call\(", text), text
    got = compiled(jax.device_put(x, batch))
    want = jax.value_and_grad(lambda x: jnp.sum(jnp.cos(xla_max_pool(x, *args))))(x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert got[1].sharding.spec == PartitionSpec("data")


@needs_onednn
@pytest.mark.parametrize("window,strides,padding", [(2, None, "VALID"), (3, 2, "SAME"), (3, 1, 1)])
def test_the_max_pool_layer_runs_onednn_and_equals_xlas_path(window, strides, padding):
    x = jnp.asarray(np.random.default_rng(7).standard_normal((4, 9, 7, 5)), jnp.float32)

    def loss(x):
        return jnp.sum(jnp.tanh(max_pool(x, window, strides, padding)))

    with lowering.use("auto", measure=False):
        text = jax.jit(jax.grad(loss)).lower(x).as_text()
        got = jax.jit(jax.value_and_grad(loss))(x)
    assert onednn_pooling.forward_p.name in text and onednn_pooling.backward_p.name in text
    with lowering.use("xla"):
        text = jax.jit(jax.grad(loss)).lower(x).as_text()
        want = jax.value_and_grad(loss)(x)
    assert "jaxdl_onednn" not in text
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_other_dtypes_and_ranks_are_not_offered_to_onednn():
    assert not onednn_pooling.supports(jnp.ones((1, 4, 4, 1), jnp.bfloat16))
    assert not onednn_pooling.supports(jnp.ones((4, 4, 1), jnp.float32))
