"""The benchmark workloads are one architecture in three implementations, and the harness runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.run import fit_vs_step, measure
from benchmarks.workloads import WORKLOADS, parameter_count, torch_batch


def _params(build, workload):
    x = jnp.asarray(workload.batch(0)["x"][:1])
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    return jax.eval_shape(lambda: build().init(keys, x, train=False))["params"]


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_jaxdl_flax_and_pytorch_build_the_same_network(name):
    workload = WORKLOADS[name]
    jaxdl_count = parameter_count(_params(workload.jaxdl_model, workload))
    assert jaxdl_count == parameter_count(_params(workload.flax_model, workload))
    torch = pytest.importorskip("torch")
    torch_model = workload.torch_model()
    # PyTorch's LSTM keeps two bias vectors per gate (input and hidden); Flax and jaxdl keep one.
    extra = 4 * 256 if name == "lstm" else 0
    assert parameter_count(torch_model) == jaxdl_count + extra
    logits = torch_model(torch_batch(workload, 0)["x"][:2])
    assert tuple(logits.shape) == (2, 10) and bool(torch.isfinite(logits).all())


def test_the_harness_times_all_implementations_and_fit_against_the_bare_step():
    # The hand-written Flax step calls optax as its users do, with JAX's standard promotion (optax computes
    # `decay ** count` from an integer count); only jaxdl's own code is held to strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        row = measure(WORKLOADS["mlp"], steps=2, blocks=1, with_torch=False)
    for name in ("jaxdl", "flax"):
        assert row[name]["ms"] > 0 and np.isfinite(row[name]["gflops"]) and row[name]["first_step_s"] > 0
    # XLA's count for a training step: a multiply-add per weight and example forward (2 flops), two backward
    # (weight and input gradients; the first layer needs no input gradient): between 4 and 8 flops a weight.
    batch, weights = WORKLOADS["mlp"].batch(0)["x"].shape[0], 669_706
    assert 4 * batch * weights < row["flops"] < 8 * batch * weights
    with jax.numpy_dtype_promotion("standard"):
        fit_row = fit_vs_step(WORKLOADS["mlp"], steps=4)
    assert fit_row["fit_ms"] > 0 and fit_row["bare_ms"] > 0 and 0 < fit_row["fit_vs_step"] < 10


def test_the_dropout_mask_benchmark_times_each_way_of_drawing_bits():
    from benchmarks.dropout_masks import mask_functions, measure

    times = measure((3, 5), repeats=1, blocks=1)
    assert set(times) == {"flax_bernoulli", "rbg_bernoulli", "jaxdl_two_per_word"} and all(t > 0 for t in times.values())
    x = jnp.arange(1.0, 16.0).reshape(3, 5)
    for f in mask_functions((3, 5)).values():  # each one is inverted dropout: zeros, or x over its keep probability
        y = np.asarray(f(jnp.int32(1), x))
        kept = y != 0
        np.testing.assert_allclose(y[kept] / np.asarray(x)[kept], y[kept][0] / np.asarray(x)[kept][0], rtol=1e-6)
