"""LoRA: only the adapters and the head train, every frozen leaf stays bitwise unchanged, the merged plain model
equals the adapted one, and merging follows ``W + alpha / rank * A @ B`` for kernels of any rank."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from hypothesis import given
from hypothesis import strategies as st

import jaxdl as jd
from jaxdl.models import DenseHead
from jaxdl.transfer.freeze import parameter_labels
from jaxdl.transfer.lora import LORA, LowRankAdapted, adapted_parts, add_adapters, matrix_shape, merge_adapters
from tests.api.test_transfer import FIT, _digits, _leaves, pretrained  # noqa: F401  (a fixture)


@given(st.lists(st.integers(1, 6), min_size=2, max_size=4), st.integers(1, 4), st.floats(0.5, 32.0),
       st.integers(0, 10**6))
def test_merging_adds_the_scaled_low_rank_product_reshaped_to_the_kernel(shape, rank, alpha, seed):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=shape).astype(np.float32)
    params = {"backbone": {"conv": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(shape[-1])}}}
    adapted = add_adapters(params, rank, "kernel$", jax.random.PRNGKey(seed))
    a, b = adapted[LORA]["backbone"]["conv"]["kernel"]["a"], adapted[LORA]["backbone"]["conv"]["kernel"]["b"]
    inputs, outputs = matrix_shape(tuple(shape))
    assert inputs * outputs == np.prod(shape) and a.shape == (inputs, rank) and b.shape == (rank, outputs)
    assert inputs + outputs == min(np.prod(shape[:c]) + np.prod(shape[c:]) for c in range(1, len(shape)))
    np.testing.assert_array_equal(merge_adapters(adapted, alpha / rank)["backbone"]["conv"]["kernel"], kernel)  # b = 0
    b = rng.normal(size=b.shape).astype(np.float32)
    adapted[LORA]["backbone"]["conv"]["kernel"]["b"] = jnp.asarray(b)
    merged = merge_adapters(adapted, alpha / rank)
    expected = kernel + (alpha / rank) * (np.asarray(a).astype(np.float64) @ b).reshape(shape)
    np.testing.assert_allclose(merged["backbone"]["conv"]["kernel"], expected, rtol=1e-5, atol=1e-5)
    assert set(merged) == {"backbone"} and np.array_equal(merged["backbone"]["conv"]["bias"], params["backbone"]["conv"]["bias"])


def test_targets_that_match_nothing_name_the_kernels_there_are():
    # Multi-head projections adapt as [in, heads * dim] (or [heads * dim, out]), convolutions as [h * w * in, out].
    assert matrix_shape((384, 12, 32)) == (384, 384) and matrix_shape((12, 32, 384)) == (384, 384)
    assert matrix_shape((3, 3, 16, 32)) == (144, 32) and matrix_shape((384, 1536)) == (384, 1536)
    params = {"backbone": {"dense": {"kernel": jnp.ones((3, 4))}}}
    with pytest.raises(ValueError, match=r"matches no kernel.*backbone/dense/kernel"):
        add_adapters(params, 2, "query", jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="lora_rank must be >= 1"):
        LowRankAdapted(DenseHead((), num_outputs=2), rank=0)
    with pytest.raises(ValueError, match="not a regular expression"):
        LowRankAdapted(DenseHead((), num_outputs=2), targets="(")


def test_lora_trains_only_adapters_and_head_and_the_merged_model_equals_the_adapted(pretrained):  # noqa: F811
    model = pretrained.with_head(DenseHead((16,), num_outputs=3))
    data = _digits()
    freeze = jd.Freeze("lora", lora_rank=2, lora_alpha=4.0)
    run = jd.fit(model, data, epochs=2, learning_rate=1e-2, initial_variables=pretrained, freeze=freeze, **FIT)
    params = run.state.params
    labels = flatten_dict(parameter_labels(params, "lora"))
    assert {k for k, label in labels.items() if label == "adapter"} == {k for k in labels if k[0] == LORA}
    assert all(labels[k] == "frozen" for k in labels if k[0] == "backbone")
    # Every frozen leaf (the backbone's weights and BatchNorm statistics) is the pretrained one, bitwise.
    for collection, tree in (("params", params), ("batch_stats", run.state.batch_stats)):
        given, got = _leaves(pretrained.variables[collection]), _leaves(tree["backbone"])
        assert given.keys() == got.keys()
        for key in given:
            np.testing.assert_array_equal(got[key], given[key], err_msg=key)
    # The adapters trained: each b moved away from zero, and kernels' count of adapters matches the targets.
    bs = [v for k, v in _leaves(params[LORA]).items() if k.endswith("/b")]
    assert bs and all(np.abs(b).max() > 0 for b in bs)
    assert len(bs) == sum(1 for k in _leaves(params["backbone"]) if k.endswith("kernel"))
    trainable = sum(np.size(v) for k, v in flatten_dict(params).items() if labels[k] != "frozen")
    assert trainable < sum(np.size(v) for v in jax.tree.leaves(params)) / 2
    # Prediction and export run the plain model with merged kernels; its outputs equal the adapted model's.
    inference = run.inference()
    assert not isinstance(inference.model, LowRankAdapted) and LORA not in inference.variables["params"]
    x = data[0][:20].astype(np.float32)
    adapted_out = run.model.apply(run.state.inference_variables(), x, train=False)
    np.testing.assert_allclose(run.predict(x), adapted_out, rtol=1e-5, atol=1e-5)
    plain, merged = adapted_parts(run.model, run.state.inference_variables())
    np.testing.assert_allclose(plain.apply(merged, x, train=False), adapted_out, rtol=1e-5, atol=1e-5)
