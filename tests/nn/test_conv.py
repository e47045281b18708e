import re

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxdl.nn import lowering
from jaxdl.nn.conv import Conv2D, conv2d


def loop_conv(image, kernel, stride, padding):
    """(I*K)(i, j) = sum_u sum_v I(i+u, j+v) K(u, v), summed over input channels, by explicit loops."""
    b, h, w, cin = image.shape
    kh, kw, _, cout = kernel.shape
    if padding == "SAME":
        out_h, out_w = -(-h // stride), -(-w // stride)
        pad_h = max((out_h - 1) * stride + kh - h, 0)
        pad_w = max((out_w - 1) * stride + kw - w, 0)
        image = np.pad(image, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((b, out_h, out_w, cout))
    for n in range(b):
        for i in range(out_h):
            for j in range(out_w):
                for o in range(cout):
                    total = 0.0
                    for u in range(kh):
                        for v in range(kw):
                            for c in range(cin):
                                total += image[n, i * stride + u, j * stride + v, c] * kernel[u, v, c, o]
                    out[n, i, j, o] = total
    return out


@given(
    batch=st.integers(1, 2), height=st.integers(3, 9), width=st.integers(3, 9), cin=st.integers(1, 3),
    cout=st.integers(1, 3), kernel=st.integers(1, 3), stride=st.integers(1, 3),
    padding=st.sampled_from(["SAME", "VALID"]), seed=st.integers(0, 10_000),
)
def test_conv2d_equals_the_loop_formula(batch, height, width, cin, cout, kernel, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, height, width, cin)).astype(np.float32)
    k = rng.normal(size=(kernel, kernel, cin, cout)).astype(np.float32)
    got = np.asarray(conv2d(jnp.asarray(x), jnp.asarray(k), stride, padding))
    np.testing.assert_allclose(got, loop_conv(x, k, stride, padding), rtol=1e-4, atol=1e-4)


@given(h=st.integers(4, 12), features=st.integers(1, 5), kernel=st.integers(1, 4), stride=st.integers(1, 2))
def test_conv_layer_shapes_and_params(h, features, kernel, stride):
    x = jnp.ones((2, h, h + 1, 3))
    layer = Conv2D(features, kernel, stride, "SAME")
    variables = jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), x))
    assert variables["params"]["kernel"].shape == (kernel, kernel, 3, features)
    assert variables["params"]["bias"].shape == (features,)
    y = jax.eval_shape(lambda v: layer.apply(v, x), variables)
    assert y.shape == (2, -(-h // stride), -(-(h + 1) // stride), features)


def test_conv_layer_adds_bias_to_conv2d():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, 2))
    layer = Conv2D(4, 3, padding="VALID")
    variables = layer.init(jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda p: p + 0.5, variables["params"])
    expected = conv2d(x, params["kernel"], 1, "VALID") + params["bias"][None, None, None, :]
    np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-6)


def test_channel_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"input has 3 channels, so the kernel must be \[kh, kw, 3, out\]; got \(3, 3, 2, 4\)"):
        conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 2, 4)))


def test_input_smaller_than_the_kernel_is_explained():
    with pytest.raises(ValueError, match="smaller than the kernel span 5"):
        conv2d(jnp.ones((1, 4, 9, 1)), jnp.ones((5, 5, 1, 1)), padding="VALID")


def test_bad_padding_is_explained():
    with pytest.raises(ValueError, match="SAME"):
        conv2d(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1)), padding="FULL")


@settings(max_examples=15)  # each example compiles two convolutions and their gradients
@given(
    batch=st.integers(1, 3), height=st.integers(1, 10), width=st.integers(1, 10), cin=st.integers(1, 4),
    cout=st.integers(1, 4), kh=st.integers(1, 4), kw=st.integers(1, 4), stride=st.integers(1, 3),
    dilation=st.integers(1, 2), padding=st.sampled_from(["SAME", "VALID", 1, ((2, 0), (0, 1))]),
    seed=st.integers(0, 10_000),
)
def test_patches_conv_equals_xla_conv_forward_and_gradients(batch, height, width, cin, cout, kh, kw, stride, dilation,
                                                            padding, seed):
    """The CPU fast path computes the native convolution, and its gradients, for any shape."""
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    assume(not (padding == "VALID" and (height < span_h or width < span_w)))  # an empty output: refused, tested below
    assume(not (padding == 1 and (height + 2 < span_h or width + 2 < span_w)))
    assume(not (padding == ((2, 0), (0, 1)) and (height + 2 < span_h or width + 1 < span_w)))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, height, width, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(kh, kw, cin, cout)), jnp.float32)

    out_shape = jax.eval_shape(lambda x, k: conv2d(x, k, stride, padding, dilation), x, k).shape
    weights = jnp.asarray(np.random.default_rng(seed + 1).normal(size=out_shape), jnp.float32)

    def run(impl):  # one compiled program per lowering, not one per operation
        f = lambda x, k: conv2d(x, k, stride, padding, dilation)  # noqa: E731
        with lowering.use(impl):  # read when the program is traced
            return jax.jit(lambda x, k: (f(x, k), jax.grad(lambda x, k: jnp.sum(f(x, k) * weights), argnums=(0, 1))(x, k)))(x, k)

    (y_fast, (gx_fast, gk_fast)), (y_ref, (gx_ref, gk_ref)) = run("patches"), run("xla")
    assert y_fast.shape == y_ref.shape
    for a, b in ((y_fast, y_ref), (gx_fast, gx_ref), (gk_fast, gk_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@settings(max_examples=3)
@given(
    height=st.integers(3, 9), channels=st.integers(1, 4), kernel=st.integers(1, 5), stride=st.integers(1, 2),
    padding=st.sampled_from(["SAME", "VALID", ((1, 1), (1, 1))]), seed=st.integers(0, 10_000),
)
def test_depthwise_conv_is_the_loop_formula_per_channel_with_matching_gradients(height, channels, kernel, stride,
                                                                                  padding, seed):
    assume(not (padding == "VALID" and kernel > height))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, height, height + 1, channels)).astype(np.float32)
    k = rng.normal(size=(kernel, kernel, 1, channels)).astype(np.float32)
    with lowering.use("patches"):
        got = np.asarray(conv2d(jnp.asarray(x), jnp.asarray(k), stride, padding, depthwise=True))
    if isinstance(padding, str):  # channel c alone, through the loop formula
        for c in range(channels):
            np.testing.assert_allclose(got[..., c:c + 1], loop_conv(x[..., c:c + 1], k[..., c:c + 1], stride, padding),
                                       rtol=1e-4, atol=1e-4)

    def gradients(impl):
        with lowering.use(impl):
            return jax.grad(lambda x, k: (conv2d(x, k, stride, padding, depthwise=True) ** 2).sum(), argnums=(0, 1))(x, k)

    for a, b in zip(gradients("patches"), gradients("xla")):  # the XLA grouped convolution as reference
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match=r"depthwise kernel must be \[kh, kw, 1, "):
        conv2d(jnp.asarray(x), jnp.ones((kernel, kernel, 2, channels)), depthwise=True)


@settings(max_examples=20)
@given(padding=st.sampled_from(["SAME", "valid", "CIRCULAR", "REFLECT", 1, 2, (1, 2), ((0, 2), (1, 0)), [(2, 1), (0, 0)]]),
       kernel=st.integers(1, 4), stride=st.integers(1, 2), dilation=st.integers(1, 2), seed=st.integers(0, 2 ** 16))
def test_the_layer_takes_every_padding_form_flax_conv_takes_with_flaxs_result(padding, kernel, stride, dilation, seed):
    """Same parameters, same outputs as ``flax.linen.Conv`` for each padding form it accepts for images."""
    x = jax.random.normal(jax.random.PRNGKey(seed), (2, 9, 8, 3))
    assume(not (isinstance(padding, str) and padding.upper() == "REFLECT" and (kernel - 1) * dilation >= 8))
    ours = Conv2D(4, kernel, stride, padding, dilation)
    variables = jax.tree.map(lambda v: v + 0.1, ours.init(jax.random.PRNGKey(1), x))
    theirs = flax.linen.Conv(4, (kernel, kernel), (stride, stride), padding, kernel_dilation=(dilation, dilation))
    assert jax.tree.map(jnp.shape, theirs.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, variables)
    np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding, message", [
    ("CAUSAL", "'CAUSAL' pads one axis of a 1-D sequence"),
    ("SAME_LOWER", "padding must be 'SAME', 'VALID', 'CIRCULAR', 'REFLECT', an int"),
    ((1, 2, 3), "padding must be"),
])
def test_a_padding_form_not_taken_is_refused_naming_the_valid_ones(padding, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        conv2d(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1)), padding=padding)
