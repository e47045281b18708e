"""oneDNN's convolution kernels (jaxdl.nn.lowering.onednn) against XLA's convolution: values and both
gradients for random geometries, under jit, grad, second derivatives, vmap (batch and trials), pmap and a mesh."""

import os
import platform
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

from jaxdl.nn import lowering
from jaxdl.nn.conv import conv2d
from jaxdl.nn.lowering.onednn import conv as onednn_conv
from jaxdl.nn.lowering.onednn import library

LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"
needs_onednn = pytest.mark.skipif(not library.available(), reason=f"oneDNN unavailable: {library.unavailable_reason()}")


def test_onednn_is_available_where_jaxdl_declares_it():
    """pyproject.toml installs oneDNN on Linux x86-64: there the kernels must build, or every test below would
    skip in silence."""
    if not LINUX_X86:
        pytest.skip("oneDNN is a dependency on Linux x86-64 only")
    assert library.available(), library.unavailable_reason()


def xla_conv(x, kernel, strides, padding, dilation, groups):
    return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


geometries = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "height": st.integers(1, 9), "width": st.integers(1, 9),
    "in_per_group": st.integers(1, 4), "out_per_group": st.integers(1, 4), "groups": st.integers(1, 3),
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)), "strides": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "dilation": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "padding": st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))),
    "seed": st.integers(0, 2**16),
})


def operands(g):
    rng = np.random.default_rng(g["seed"])
    c, o = g["in_per_group"] * g["groups"], g["out_per_group"] * g["groups"]
    x = jnp.asarray(rng.standard_normal((g["batch"], g["height"], g["width"], c)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((*g["kernel"], g["in_per_group"], o)), jnp.float32)
    geometry = onednn_conv.Geometry(g["strides"], g["padding"], g["dilation"], g["groups"])
    return x, kernel, geometry


def valid(g):
    return all(n + lo + hi >= (k - 1) * d + 1
               for n, (lo, hi), k, d in zip((g["height"], g["width"]), g["padding"], g["kernel"], g["dilation"]))


def close(a, b, scale=1.0):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-5 * scale)


@needs_onednn
@given(geometries)
def test_forward_and_both_gradients_equal_xla(g):
    assume(valid(g))
    x, kernel, geometry = operands(g)
    args = (g["strides"], g["padding"], g["dilation"], g["groups"])
    y_ref, vjp_ref = jax.vjp(lambda x, k: xla_conv(x, k, *args), x, kernel)
    y, vjp = jax.vjp(jax.jit(lambda x, k: onednn_conv.forward(x, k, geometry)), x, kernel)
    cotangent = jnp.asarray(np.random.default_rng(g["seed"] + 1).standard_normal(y_ref.shape), jnp.float32)
    scale = float(np.prod(g["kernel"])) * g["in_per_group"]  # terms summed per value
    close(y, y_ref, scale)
    for got, want in zip(jax.jit(vjp)(cotangent), vjp_ref(cotangent)):
        close(got, want, scale * g["batch"] * g["height"] * g["width"])


@needs_onednn
@settings(max_examples=5)  # each example compiles four programs
@given(geometries)
def test_second_derivatives_equal_xla(g):
    """The three passes are each other's transposes, so a Hessian-vector product runs oneDNN too."""
    assume(valid(g))
    x, kernel, geometry = operands(g)
    args = (g["strides"], g["padding"], g["dilation"], g["groups"])

    def hvp(conv):
        loss = lambda x, k: jnp.sum(jnp.tanh(conv(x, k)))
        return jax.jvp(jax.grad(loss, argnums=(0, 1)), (x, kernel), (x * 0.5, kernel * -0.25))[1]

    got = jax.jit(lambda: hvp(lambda x, k: onednn_conv.forward(x, k, geometry)))()
    want = hvp(lambda x, k: xla_conv(x, k, *args))
    for a, b in zip(got, want):
        close(a, b, 100.0)


@needs_onednn
@settings(max_examples=3)  # each example compiles a program per trial and the vmapped one
@given(trials=st.integers(1, 3), g=geometries)
def test_vmapped_trials_fold_into_groups_and_equal_each_trial_alone(trials, g):
    """Each trial's own kernel (and images): one grouped call under vmap equals the trials one by one."""
    assume(valid(g))
    x, kernel, geometry = operands(g)
    xs = jnp.stack([x * (t + 1) for t in range(trials)])
    kernels = jnp.stack([kernel - t for t in range(trials)])
    loss = lambda x, k: jnp.sum(jnp.sin(onednn_conv.forward(x, k, geometry)))
    batched = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1))))(xs, kernels)
    for t in range(trials):
        alone = jax.value_and_grad(loss, argnums=(0, 1))(xs[t], kernels[t])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.tree.map(lambda v: v[t], batched))):
            close(a, b, 100.0)
    # Shared images, mapped kernels (tune's trials on one batch), and mapped images, shared kernel.
    shared = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0))(x, kernels)
    for t in range(trials):
        for a, b in zip(jax.grad(loss, argnums=(0, 1))(x, kernels[t]), (shared[0][t], shared[1][t])):
            close(a, b, 100.0)
    folded = jax.vmap(lambda x: onednn_conv.forward(x, kernel, geometry), in_axes=1, out_axes=1)(xs)
    for t in range(trials):
        close(folded[t], onednn_conv.forward(xs[t], kernel, geometry), 10.0)


@needs_onednn
def test_the_fixed_rule_on_a_cpu_is_onednn_and_its_custom_calls_are_in_the_program():
    x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    with lowering.use("auto", measure=False):
        text = jax.jit(jax.grad(lambda x, k: jnp.sum(conv2d(x, k, 2) ** 2), argnums=(0, 1))).lower(x, kernel).as_text()
    for target in (t for t in library.TARGETS if "conv" in t):
        assert target in text


@needs_onednn
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv2d_layer_path_matches_xla_under_jit_and_grad(depthwise):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((4, 11, 9, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 1 if depthwise else 6, 6)), jnp.float32)

    def loss(x, k):
        return jnp.sum(jnp.cos(conv2d(x, k, (2, 1), "SAME", (1, 2), depthwise=depthwise)))

    with lowering.use("onednn"):
        got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, kernel)
    with lowering.use("xla"):
        want = jax.value_and_grad(loss, argnums=(0, 1))(x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 100.0)


@needs_onednn
def test_same_inputs_give_the_same_bits():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 14, 14, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 8, 16)), jnp.float32)
    geometry = onednn_conv.Geometry((1, 1), ((1, 1), (1, 1)), (1, 1))
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(onednn_conv.forward(x, k, geometry) ** 2), argnums=(0, 1)))
    first, second = grad(x, kernel), grad(x, kernel)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_onednn
def test_pmap_runs_each_devices_convolution():
    devices = jax.local_device_count()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((devices, 2, 7, 7, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 5)), jnp.float32)
    geometry = onednn_conv.Geometry((1, 1), ((1, 1), (1, 1)), (1, 1))
    got = jax.pmap(jax.grad(lambda x, k: jnp.sum(onednn_conv.forward(x, k, geometry) ** 2), argnums=1),
                   in_axes=(0, None))(x, kernel)
    for d in range(devices):
        want = jax.grad(lambda k: jnp.sum(xla_conv(x[d], k, (1, 1), ((1, 1), (1, 1)), (1, 1), 1) ** 2))(kernel)
        close(got[d], want, 1e3)


@needs_onednn
def test_a_symbolic_batch_exports_the_portable_xla_path():
    """jax.export serialises a program for any machine: no oneDNN custom call may be in it."""
    from jax import export

    batch = export.symbolic_shape("b")[0]
    kernel = jnp.ones((3, 3, 3, 4))
    exported = export.export(jax.jit(lambda x: conv2d(x, kernel)))(jax.ShapeDtypeStruct((batch, 8, 8, 3), jnp.float32))
    assert "jaxdl_onednn" not in exported.mlir_module()


def test_unsupported_dtypes_are_not_offered_to_onednn():
    assert not onednn_conv.supports(jnp.ones((1, 4, 4, 1), jnp.float16), jnp.ones((3, 3, 1, 1), jnp.float16))
    assert not onednn_conv.supports(jnp.ones((1, 4, 4, 1), jnp.float32), jnp.ones((3, 3, 1, 1), jnp.bfloat16))


def _run_isolated(code: str, **env: str):
    import subprocess
    import sys

    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


CONV_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jaxdl.nn.conv import conv2d
from jaxdl.nn import lowering
x = jnp.arange(2 * 6 * 6 * 2, dtype=jnp.float32).reshape(2, 6, 6, 2) / 50
k = jnp.ones((3, 3, 2, 3)) / 9
with lowering.use("{mode}"):
    got = jax.grad(lambda k: jnp.sum(conv2d(x, k) ** 2))(k)
with lowering.use("xla"):
    want = jax.grad(lambda k: jnp.sum(conv2d(x, k) ** 2))(k)
np.testing.assert_allclose(got, want, rtol=1e-5)
print("ok")
"""


@pytest.mark.parametrize("env,reason", [
    ({"JAXDL_ONEDNN_ROOT": "/nonexistent"}, "oneDNN was not found"),
    ({"CXX": "/nonexistent/g++"}, "does not run"),
])
def test_without_onednn_or_a_compiler_convolutions_take_xlas_path_with_one_line(tmp_path, env, reason):
    result = _run_isolated(CONV_SCRIPT.format(mode="onednn"), JAXDL_CACHE=str(tmp_path), **env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    lines = [line for line in result.stderr.splitlines() if "oneDNN kernels unavailable" in line]
    assert len(lines) == 1 and reason in lines[0], result.stderr


@needs_onednn
def test_concurrent_first_uses_compile_the_kernels_once(tmp_path):
    """Two processes on an empty cache: the file lock lets one compile, the other waits and loads its build."""
    import subprocess
    import sys

    env = {**os.environ, "JAXDL_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", CONV_SCRIPT.format(mode="onednn")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 and out.strip() == "ok" for p, (out, _) in zip(procs, outputs)), outputs
    compiles = sum(len(re.findall("compiling the oneDNN kernels", err)) for _, err in outputs)
    assert compiles == 1, outputs
    assert len(list(tmp_path.glob("kernels/*/libjaxdl_onednn.so"))) == 1
    assert not list(tmp_path.glob("kernels/*/*.tmp"))


@needs_onednn
def test_a_batch_sharded_convolution_stays_local_on_a_mesh():
    """jit over an 8-device mesh: each device convolves its part of the batch (no all-gather of the images),
    the kernel gradient is summed across the batch's devices, and the values are XLA's."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((16, 8, 8, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)
    geometry = onednn_conv.Geometry((1, 1), ((1, 1), (1, 1)), (1, 1))
    batch, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())

    def loss(conv):
        return jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1))

    step = jax.jit(loss(lambda x, k: onednn_conv.forward(x, k, geometry)), in_shardings=(batch, replicated))
    compiled = step.lower(jax.device_put(x, batch), kernel).compile()
    text = compiled.as_text()
    assert "all-gather" not in text and "all-reduce" in text
    assert re.search(r"f32\[4,8,8,4\]\{[0-9,]*\} custom-call\(", text)  # a quarter of the batch per device
    got = compiled(jax.device_put(x, batch), kernel)
    want = loss(lambda x, k: xla_conv(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1), 1))(x, kernel)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        close(a, b, 1e3)
    assert got[1][0].sharding.spec == PartitionSpec("data")
