"""The same step on one device, under pmap and over a Mesh (8 fake CPU devices, see conftest): same numbers."""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl import checkpoint
from jaxdl.data.pipeline import ArrayDataset, train_batches
from jaxdl.distributed.parallel import Parallel, make_parallel
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP, ConvNet
from jaxdl.training.loop import fit
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.precision import DynamicLossScale
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step, make_train_step
from tests.training.helpers import blobs

DEVICES = jax.device_count()
BATCH = 16


def _setup(model, parallel: Parallel, accumulation_steps=1, precision="float32", seed=0):
    tx, _ = make_optimizer({"name": "momentum", "learning_rate": 0.05}, 10, 1)
    metrics_fn = classification_metrics(3)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), seed, precision)
    kwargs = {"axis_name": parallel.axis_name, "precision": precision}
    train = make_train_step(model, softmax_cross_entropy, metrics_fn, tx, accumulation_steps=accumulation_steps, **kwargs)
    evaluate = make_eval_step(model, softmax_cross_entropy, metrics_fn, **kwargs)
    return state, parallel.compile_train_step(train), parallel.compile_eval_step(evaluate)


def _run(model, parallel, steps=3, batch=BATCH, **kwargs):
    state, train, evaluate = _setup(model, parallel, **kwargs)
    state = parallel.put_state(state)
    data = blobs(batch * steps, seed=1)
    for b in train_batches(data, batch, seed=0, epoch=0):
        state, metrics = train(state, parallel.put_batch(b))
    eval_metrics = evaluate(state, parallel.put_batch(next(train_batches(data, batch, seed=0, epoch=1))))
    return jax.device_get(parallel.get_state(state)), metrics.compute(), eval_metrics.compute()


def _assert_states_close(a, b, rtol=2e-5, atol=2e-6):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def _bn_convnet():
    return ConvNet(channels=(4,), num_outputs=3, batch_norm=True, dense=(8,))


def test_jit_pmap_and_mesh_agree_after_several_steps_batch_norm_statistics_included():
    reference = _run(_bn_convnet(), make_parallel("jit"))
    for strategy in ("pmap", "mesh"):
        state, train_metrics, eval_metrics = _run(_bn_convnet(), make_parallel(strategy))
        _assert_states_close(state.params, reference[0].params)
        _assert_states_close(state.batch_stats, reference[0].batch_stats)
        assert int(state.step) == int(reference[0].step) == 3
        # Metrics are reduced over devices: counts and losses of the whole batch.
        assert train_metrics["count"] == eval_metrics["count"] == BATCH
        np.testing.assert_allclose(train_metrics["loss"], reference[1]["loss"], rtol=1e-5)
        np.testing.assert_allclose(eval_metrics["loss"], reference[2]["loss"], rtol=1e-5)
        # The step's norms are of the all-reduced gradient, once: not summed over devices like the metric sums.
        for norm in ("grad_norm", "update_norm", "param_norm"):
            np.testing.assert_allclose(train_metrics[norm], reference[1][norm], rtol=1e-4, err_msg=f"{strategy} {norm}")
    assert reference[0].batch_stats, "the model under test must carry BatchNorm statistics"


@settings(max_examples=4)
@given(st.sampled_from([2, 4]), st.integers(0, 1000))
def test_accumulating_k_micro_batches_equals_one_step_on_the_whole_batch(k, seed):
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    whole = _run(model, make_parallel("jit"), seed=seed)
    accumulated = _run(model, make_parallel("jit"), accumulation_steps=k, seed=seed)
    _assert_states_close(accumulated[0].params, whole[0].params)
    assert accumulated[1]["count"] == BATCH and np.isclose(accumulated[1]["loss"], whole[1]["loss"], rtol=1e-5)


def test_model_axis_sharded_step_equals_the_unsharded_step():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    rules = (("Dense_0/kernel", (None, "model")),)
    tx, _ = make_optimizer({"name": "momentum", "learning_rate": 0.05}, 10, 1)
    params = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0).params
    sharded = make_parallel("mesh", (-1, 2), rules, params)
    placed = sharded.put_state(create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0))
    kernel = placed.params["Dense_0"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model")
    assert kernel.addressable_shards[0].data.shape == (16, 4)  # the 8 hidden units split over 2 devices
    _assert_states_close(_run(model, sharded)[0].params, _run(model, make_parallel("jit"))[0].params)


def test_state_saved_under_pmap_restores_and_continues_under_mesh(tmp_path):
    model = _bn_convnet()
    pmap, mesh, jit = make_parallel("pmap"), make_parallel("mesh"), make_parallel("jit")
    state, pmap_train, _ = _setup(model, pmap)
    data = blobs(BATCH * 4, seed=2)
    batches = list(train_batches(data, BATCH, seed=0, epoch=0))
    state = pmap.put_state(state)
    for b in batches[:2]:
        state, _ = pmap_train(state, pmap.put_batch(b))
    checkpoint.save_checkpoint(tmp_path / "ckpt", pmap.get_state(state), step=2)
    finals = []
    for parallel in (mesh, jit):
        fresh, train, _ = _setup(model, parallel)
        restored = parallel.put_state(checkpoint.restore_checkpoint(tmp_path / "ckpt", fresh))
        assert int(jax.device_get(parallel.get_state(restored).step)) == 2
        for b in batches[2:]:
            restored, _ = train(restored, parallel.put_batch(b))
        finals.append(jax.device_get(parallel.get_state(restored)))
    _assert_states_close(finals[0].params, finals[1].params)
    _assert_states_close(finals[0].batch_stats, finals[1].batch_stats)


@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_fit_runs_200_steps_on_8_devices_without_hanging(strategy):
    # Too many queued collective-bearing steps hang XLA:CPU's all-reduce when another process competes for the
    # cores (16 in flight hung every time with one busy process beside it); fit bounds the steps in flight.
    # The busy process makes that competition certain here instead of an accident of the parallel suite.
    assert DEVICES == 8
    parallel = make_parallel(strategy)
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    state, train, evaluate = _setup(model, parallel)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = fit(state, train_step=train, eval_step=evaluate, train_data=blobs(8 * 200, seed=3), batch_size=8,
                     num_epochs=1, validation_data=blobs(100, seed=4), eval_batch_size=30, log_every=1000,
                     progress=False, parallel=parallel)
    finally:
        busy.kill()
        busy.wait()
    assert result.summary["steps"] == 200
    # The eval batch of 30 is rounded up to 32 for 8 devices; the last batch is padded: nothing dropped.
    assert result.summary["validation"]["count"] == 100


def test_bfloat16_compute_keeps_float32_parameters_and_tracks_float32():
    model = MLP(hidden_sizes=(16,), num_outputs=3)
    full = _run(model, make_parallel("jit"), steps=4)
    half = _run(model, make_parallel("jit"), steps=4, precision="bfloat16")
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(half[0].params))
    _assert_states_close(half[0].params, full[0].params, rtol=0.05, atol=0.02)  # bf16 keeps ~3 significant digits
    assert abs(half[1]["loss"] - full[1]["loss"]) < 0.05


def test_float16_step_with_overflowing_gradients_skips_the_update_and_halves_the_scale():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    parallel = make_parallel("jit")
    state, train, _ = _setup(model, parallel, precision="float16")
    assert isinstance(state.loss_scale, DynamicLossScale)
    before = jax.device_get(state)
    bad = {"x": np.full((BATCH, 4, 4, 1), 6e4, np.float32), "y": np.zeros(BATCH, np.int32)}
    state, _ = train(state, bad)  # 6e4 * weights overflows float16
    after = jax.device_get(state)
    jax.tree.map(np.testing.assert_array_equal, after.params, before.params)
    assert float(after.loss_scale.scale) == float(before.loss_scale.scale) / 2
    good = next(train_batches(blobs(BATCH, seed=5), BATCH, seed=0, epoch=0))
    state, _ = train(state, good)
    assert not np.array_equal(jax.device_get(state.params["Dense_0"]["kernel"]), before.params["Dense_0"]["kernel"])


def test_dynamic_loss_scale_grows_after_a_period_of_finite_steps():
    scale = DynamicLossScale.create(8.0, period=3)
    for _ in range(3):
        scale = scale.adjust(jnp.asarray(True))
    assert float(scale.scale) == 16.0 and int(scale.good_steps) == 0
    assert float(scale.adjust(jnp.asarray(False)).scale) == 8.0
    assert float(DynamicLossScale.create(1.0).adjust(jnp.asarray(False)).scale) == 1.0  # never below 1


def test_bad_parallel_settings_fail_clearly():
    with pytest.raises(ValueError, match="not divisible by the 8 data-parallel devices"):
        make_parallel("mesh").check_batch_size(12)
    with pytest.raises(ValueError, match=r"has 6 devices but 8 are visible"):
        make_parallel("mesh", (3, 2))
    params = {"Dense_0": {"kernel": jnp.zeros((4, 8))}}
    with pytest.raises(ValueError, match=r"names no parameter; parameter paths are \['Dense_0/kernel'\]"):
        make_parallel("mesh", (4, 2), [("Conv_0/kernel", (None, "model"))], params)
    with pytest.raises(ValueError, match="valid strategies are"):
        make_parallel("tpu_magic")
    with pytest.raises(ValueError, match="mesh axes are"):
        make_parallel("mesh", (4, 2), [("Dense_0/kernel", (None, "tensor"))], params)
    pmap = make_parallel("pmap")
    with pytest.raises(ValueError, match="such as 8 or 16.*pads its last batch"):
        pmap.put_batch({"x": np.zeros((12, 2)), "y": np.zeros(12)})


def test_multi_host_rows_partition_each_batch():
    # One process here; the row arithmetic is what every host runs with its own index.
    data = ArrayDataset(np.arange(40, dtype=np.float32)[:, None], np.arange(40))
    full = [b["y"] for b in train_batches(data, 8, seed=1, epoch=0)]
    halves = [[b["y"] for b in train_batches(data, 8, seed=1, epoch=0, rows=slice(h * 4, (h + 1) * 4))] for h in (0, 1)]
    for whole, first, second in zip(full, *halves):
        np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    evals = [list(data.eval_batches(16, rows=slice(h * 8, (h + 1) * 8))) for h in (0, 1)]
    seen = np.concatenate([b["y"][b["mask"]] for host in evals for b in host])
    assert sorted(seen.tolist()) == list(range(40))
    assert all(len(b["y"]) == 8 for host in evals for b in host)


def test_the_compilation_cache_directory_receives_compiled_programs(tmp_path):
    # In a fresh process: the cache is process-wide state that other tests must not inherit.
    script = (f"from jaxdl.distributed.runtime import configure_compilation_cache; import jax, jax.numpy as jnp; "
              f"configure_compilation_cache({str(tmp_path)!r}, min_compile_seconds=0); "
              f"jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))))")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=pathlib.Path(__file__).parents[2])
    assert any(tmp_path.iterdir()), "no compiled program was written to the cache directory"
