"""The weights' moving average: the recurrence, training untouched, evaluation through it, every strategy."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl import checkpoint
from jaxdl.cli import main
from jaxdl.data.pipeline import train_batches
from jaxdl.distributed.parallel import make_parallel
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step, make_predict_step, make_train_step
from jaxdl.transfer.backbone import load_run_model
from tests.test_cli import ROOT, TINY
from tests.training.helpers import blobs, bn_convnet

METRICS = classification_metrics(3)
TX, _ = make_optimizer({"name": "adam", "learning_rate": 3e-2}, 10, 3)
SAMPLE = jnp.zeros((1, 4, 4, 1))


def _trajectory(model, decay, steps, parallel=None, precision="float32"):
    """Every state of ``steps`` steps on blobs (host copies), trained with ``decay`` (0: no average)."""
    parallel = parallel or make_parallel("jit")
    state = create_train_state(model, TX, SAMPLE, 0, precision, average=decay > 0)
    step = make_train_step(model, softmax_cross_entropy, METRICS, TX, ema_decay=decay,
                           axis_name=parallel.axis_name, precision=precision)
    step = parallel.compile_train_step(step)
    state, states = parallel.put_state(state), []
    for batch in train_batches(blobs(16 * steps, seed=2), 16, seed=0, epoch=0):
        state, _ = step(state, parallel.put_batch(batch))
        states.append(jax.device_get(parallel.get_state(state)))
    return states


@settings(max_examples=4)  # each decay compiles a step
@given(decay=st.sampled_from([0.5, 0.9, 0.99]), steps=st.integers(1, 12))
def test_the_average_follows_the_numpy_recurrence_and_training_is_untouched(decay, steps):
    """Parameters are bitwise those of a run without the average; the average is
    ``a_t = r_t a_(t-1) + (1 - r_t) p_t`` with ``r_t = min(decay, (1 + t) / (10 + t))``, ``a_0 = p_0``, in NumPy."""
    model = bn_convnet()
    plain, averaged = _trajectory(model, 0.0, steps), _trajectory(model, decay, steps)
    for a, b in zip(plain, averaged):
        jax.tree.map(np.testing.assert_array_equal, (a.params, a.batch_stats, a.opt_state), (b.params, b.batch_stats, b.opt_state))
        assert a.average is None
    expected = jax.device_get(create_train_state(model, TX, SAMPLE, 0).params)
    for t, state in enumerate(plain, start=1):
        rate = min(decay, (1 + t) / (10 + t))
        expected = jax.tree.map(lambda e, p: rate * np.asarray(e, np.float64) + (1 - rate) * np.asarray(p, np.float64),
                                expected, state.params)
    jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6), averaged[-1].average, expected)


def test_evaluation_and_prediction_use_the_average():
    model = bn_convnet()
    state = jax.device_get(_trajectory(model, 0.9, 6)[-1])
    assert any(not np.array_equal(a, p) for a, p in zip(jax.tree.leaves(state.average), jax.tree.leaves(state.params)))
    as_params = state.replace(params=state.average, average=None)
    batch = {"x": blobs(32, seed=7).x, "y": blobs(32, seed=7).y}
    evaluate = jax.jit(make_eval_step(model, softmax_cross_entropy, METRICS))
    predict = jax.jit(make_predict_step(model))
    np.testing.assert_array_equal(predict(state, batch["x"]), predict(as_params, batch["x"]))
    assert float(evaluate(state, batch).compute()["loss"]) == float(evaluate(as_params, batch).compute()["loss"])
    raw = state.replace(average=None)
    assert not np.array_equal(predict(state, batch["x"]), predict(raw, batch["x"]))


@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_the_average_under_pmap_and_mesh_equals_the_single_device_one(strategy):
    model = MLP(hidden_sizes=(16,), num_outputs=3)
    reference = _trajectory(model, 0.8, 3)[-1].average
    got = _trajectory(model, 0.8, 3, make_parallel(strategy))[-1].average
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), got, reference)


def test_a_float16_step_that_overflows_leaves_the_average_alone():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    state = create_train_state(model, TX, SAMPLE, 0, "float16", average=True)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, METRICS, TX, ema_decay=0.9, precision="float16"))
    before = jax.device_get(state.average)
    state, _ = step(state, {"x": np.full((16, 4, 4, 1), 6e4, np.float32), "y": np.zeros(16, np.int32)})
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.average), before)
    state, _ = step(state, next(train_batches(blobs(16, seed=5), 16, seed=0, epoch=0)))
    assert not np.array_equal(jax.device_get(state.average["Dense_0"]["kernel"]), before["Dense_0"]["kernel"])


def test_bad_decays_and_a_state_without_an_average_fail_clearly():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    for decay in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"ema_decay .*0 \(off\) or in \(0, 1\)"):
            make_train_step(model, softmax_cross_entropy, METRICS, TX, ema_decay=decay)
    step = make_train_step(model, softmax_cross_entropy, METRICS, TX, ema_decay=0.9)
    state = create_train_state(model, TX, SAMPLE, 0)
    with pytest.raises(ValueError, match="average=True"):
        step(state, {"x": blobs(4).x, "y": blobs(4).y})


def test_a_run_with_ema_decay_is_evaluated_restored_and_reused_through_its_average(tmp_path, capsys):
    """`jaxdl train --config.train.ema_decay`: the checkpoint holds the average, `evaluate` reproduces the run's
    test metrics from it, and the run's model, taken as a backbone, is the average; a GAN refuses the field."""
    workdir = tmp_path / "run"
    experiment = str(ROOT / "experiments" / "mnist_mlp.py")
    assert main(["train", experiment, "--workdir", str(workdir), *TINY, "--config.train.ema_decay=0.9"]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    with checkpoint.Checkpointer(workdir / "checkpoints") as checkpointer:
        saved = checkpointer.restore_subtree(lambda tree: {"params": tree["params"], "average": tree["average"]},
                                             checkpoint.returned_step(workdir))
    _, variables = load_run_model(workdir)
    jax.tree.map(np.testing.assert_array_equal, variables["params"], saved["average"])
    assert any(not np.array_equal(a, p) for a, p in zip(jax.tree.leaves(saved["average"]), jax.tree.leaves(saved["params"])))
    capsys.readouterr()
    assert main(["evaluate", str(workdir)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)
    assert main(["train", experiment, "--workdir", str(tmp_path / "bad"), *TINY, "--config.train.ema_decay=1.5"]) == 2
    assert "train.ema_decay" in capsys.readouterr().err
    assert main(["train", str(ROOT / "experiments" / "mnist_gan.py"), "--workdir", str(tmp_path / "gan"), *TINY,
                 "--config.train.ema_decay=0.9"]) == 2
    assert "train.generator_ema" in capsys.readouterr().err
