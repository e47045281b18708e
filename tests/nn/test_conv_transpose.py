import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.nn import lowering
from jaxdl.nn.conv_transpose import ConvTranspose2D, conv_transpose2d


def scatter_transpose_conv(image, kernel, stride):
    """The textbook transposed convolution ("VALID"): every input pixel scatters kernel * pixel into the output
    block at ``stride * (i, j)``, summed where blocks overlap; by explicit loops."""
    b, h, w, cin = image.shape
    kh, kw, _, cout = kernel.shape
    out = np.zeros((b, (h - 1) * stride + kh, (w - 1) * stride + kw, cout))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for u in range(kh):
                    for v in range(kw):
                        out[n, i * stride + u, j * stride + v] += image[n, i, j] @ kernel[u, v]
    return out


@settings(max_examples=4)
@given(h=st.integers(1, 5), w=st.integers(1, 5), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       seed=st.integers(0, 10_000))
def test_valid_transpose_conv_is_the_scatter_formula_with_a_flipped_kernel(h, w, kernel, stride, seed):
    """``lax.conv_transpose`` (without ``transpose_kernel``) correlates the dilated input with the kernel, so
    it equals the textbook scatter with the kernel flipped in space, its "VALID" output ``h * stride +
    max(kernel - stride, 0)`` long (TensorFlow's rule: zeros after the scatter when the kernel is shorter
    than the stride); the phase lowering must agree."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, 2)).astype(np.float32)
    k = rng.normal(size=(kernel, kernel, 2, 3)).astype(np.float32)
    scattered = scatter_transpose_conv(x, k[::-1, ::-1], stride)
    out_h, out_w = h * stride + max(kernel - stride, 0), w * stride + max(kernel - stride, 0)
    expected = np.pad(scattered, ((0, 0), (0, out_h - scattered.shape[1]), (0, out_w - scattered.shape[2]), (0, 0)))
    with lowering.use("patches"):
        y = conv_transpose2d(jnp.asarray(x), jnp.asarray(k), stride, "VALID")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=10)  # each example compiles two transposed convolutions and their gradients
@given(
    batch=st.integers(1, 2), height=st.integers(1, 8), width=st.integers(1, 8), cin=st.integers(1, 3),
    cout=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4), stride_h=st.integers(1, 3),
    stride_w=st.integers(1, 3), dilation=st.integers(1, 2),
    padding=st.sampled_from(["SAME", "VALID", ((2, 1), (0, 2)), ((1, -1), (3, 0))]), seed=st.integers(0, 10_000),
)
def test_phase_lowering_equals_lax_conv_transpose_forward_and_gradients(batch, height, width, cin, cout, kh, kw,
                                                                        stride_h, stride_w, dilation, padding, seed):
    """The CPU fast path computes `lax.conv_transpose`, and its gradients, for any shape, stride (also
    different per axis), dilation and padding (also negative); an empty output is refused in both."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, height, width, cin)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(kh, kw, cin, cout)), jnp.float32)
    strides = (stride_h, stride_w)
    reference = jax.lax.conv_transpose(x, k, strides, padding, rhs_dilation=(dilation, dilation),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if reference.size == 0:
        for impl in ("patches", "xla"):
            with lowering.use(impl), pytest.raises(ValueError, match="empty output"):
                conv_transpose2d(x, k, strides, padding, dilation)
        return
    weights = jnp.asarray(np.random.default_rng(seed + 1).normal(size=reference.shape), jnp.float32)

    def run(impl):
        f = lambda x, k: conv_transpose2d(x, k, strides, padding, dilation)  # noqa: E731
        with lowering.use(impl):
            return jax.jit(lambda x, k: (f(x, k), jax.grad(lambda x, k: jnp.sum(f(x, k) * weights), argnums=(0, 1))(x, k)))(x, k)

    (y_fast, (gx_fast, gk_fast)), (y_ref, (gx_ref, gk_ref)) = run("patches"), run("xla")
    np.testing.assert_allclose(y_ref, reference, rtol=1e-5, atol=1e-5)
    assert y_fast.shape == reference.shape
    for a, b in ((y_fast, y_ref), (gx_fast, gx_ref), (gk_fast, gk_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@settings(max_examples=3)
@given(size=st.integers(2, 6), kernel=st.integers(1, 4), stride=st.integers(1, 3), features=st.integers(1, 5))
def test_layer_matches_flax_conv_transpose_with_the_same_parameters(size, kernel, stride, features):
    """Parameter names, shapes and outputs are those of ``flax.linen.ConvTranspose``: weights move between them."""
    x = jax.random.normal(jax.random.PRNGKey(size), (2, size, size, 3))
    ours = ConvTranspose2D(features, kernel, stride)
    variables = ours.init(jax.random.PRNGKey(1), x)
    variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # a nonzero bias
    theirs = nn.ConvTranspose(features, (kernel, kernel), (stride, stride))
    assert jax.tree_util.tree_map(jnp.shape, theirs.init(jax.random.PRNGKey(1), x)) == jax.tree_util.tree_map(jnp.shape, variables)
    y = ours.apply(variables, x)
    assert y.shape == (2, size * stride, size * stride, features)
    np.testing.assert_allclose(y, theirs.apply(variables, x), rtol=1e-5, atol=1e-5)


def test_channel_mismatch_and_unknown_lowering_are_explained():
    with pytest.raises(ValueError, match=r"input has 3 channels.*\[kh, kw, 3, out\]"):
        conv_transpose2d(jnp.ones((1, 4, 4, 3)), jnp.ones((2, 2, 2, 1)))
    with pytest.raises(ValueError, match=r"unknown convolution lowering 'winograd'; valid ones are \['auto', 'xla', 'patches', 'onednn'\]"):
        lowering.configure(mode="winograd")
