import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import checkpoint
from jaxdl.distributed.parallel import compile_eval_step, compile_train_step
from jaxdl.metrics import ClassificationMetrics
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.evaluation import evaluate
from jaxdl.training.loop import MAX_STEPS_IN_FLIGHT, fit
from jaxdl.training.state import InputSpec
from tests.training.helpers import blobs, small_setup


def _fit(tmp_path=None, eval_step=None, **kwargs):
    _, state, step, default_eval, schedule = small_setup()
    snapshots = {}
    result = fit(state, train_step=compile_train_step(step), eval_step=eval_step or compile_eval_step(default_eval),
                 train_data=blobs(96), validation_data=blobs(40, seed=5), test_data=blobs(30, seed=6), batch_size=32,
                 eval_batch_size=16, workdir=tmp_path, log_every=2, schedule=schedule, progress=False,
                 hooks=[lambda epoch, row, s: snapshots.__setitem__(epoch, jax.device_get(s.params))], **kwargs)
    return result, snapshots


def test_early_stopping_returns_the_best_epoch_not_the_last():
    # A validation "loss" that is smallest at epoch 3 (after 9 steps) and grows afterwards.
    def eval_step(state, batch):
        loss = jnp.abs(state.step.astype(jnp.float32) - 9.0)
        return ClassificationMetrics(loss * batch["mask"].sum(dtype=jnp.float32), batch["mask"].sum().astype(jnp.int32),
                                     jnp.zeros((3, 3), jnp.int32))

    result, snapshots = _fit(eval_step=jax.jit(eval_step), num_epochs=8,
                             early_stopping=EarlyStopping("val_loss", patience=2, restore_best=True))
    assert result.summary["best_epoch"] == 3
    assert len(result.history) == 5  # epochs 4 and 5 did not improve: stop after patience 2
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(result.state.params), snapshots[3])
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(snapshots[3]), jax.tree.leaves(snapshots[5])))


def test_fit_writes_logs_checkpoint_and_summary(tmp_path):
    result, _ = _fit(tmp_path, num_epochs=2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "epoch"}
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert all("learning_rate" in r for r in records if r["kind"] == "train")
    assert not (tmp_path / "learning_curves.png").exists()  # figures are hooks (jaxdl.report.curves)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test"]["count"] == 30 and summary["validation"]["count"] == 40
    assert summary["wall_seconds"] > 0
    restored = checkpoint.restore_checkpoint(tmp_path / "checkpoints", result.state)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(result.state))


def test_evaluate_counts_every_example_once():
    _, state, _, eval_step, _ = small_setup()
    for n in (1, 15, 16, 17, 50):
        assert evaluate(state, jax.jit(eval_step), blobs(n), batch_size=16)["count"] == n


def test_nan_loss_stops_training_and_never_writes_a_checkpoint(tmp_path):
    data = blobs(96)
    data.x[5, 0, 0, 0] = np.nan
    _, state, step, eval_step, _ = small_setup()
    with pytest.raises(FloatingPointError, match="learning_rate|clip_norm"):
        fit(state, train_step=compile_train_step(step), eval_step=jax.jit(eval_step), train_data=data,
            validation_data=blobs(16), batch_size=32, num_epochs=1, workdir=tmp_path, log_every=1, progress=False)
    assert checkpoint.latest_step(tmp_path / "checkpoints") is None


def test_wrong_input_shape_or_dtype_is_explained():
    _, state, step, eval_step, _ = small_setup()
    spec = InputSpec((4, 4, 1), "float32")
    with pytest.raises(ValueError, match=r"per-example shape \(4, 4, 1\)"):
        fit(state, train_step=step, eval_step=eval_step, train_data=blobs(64, shape=(16,)), batch_size=32,
            num_epochs=1, input_spec=spec, progress=False)
    bad = blobs(64)
    bad.x = bad.x.astype(np.float64)
    with pytest.raises(ValueError, match="dtype float64 but the model expects float32"):
        fit(state, train_step=step, eval_step=eval_step, train_data=bad, batch_size=32, num_epochs=1,
            input_spec=spec, progress=False)


def test_the_loop_never_queues_more_than_the_bound_of_steps(monkeypatch):
    """With no logging inside the epoch, the loop must still wait on old steps once the queue is full."""
    waited = []
    original = jax.block_until_ready
    monkeypatch.setattr(jax, "block_until_ready", lambda x: waited.append(1) or original(x))
    _, state, step, eval_step, _ = small_setup()
    steps = MAX_STEPS_IN_FLIGHT + 5
    fit(state, train_step=compile_train_step(step), eval_step=jax.jit(eval_step), train_data=blobs(32 * steps),
        batch_size=32, num_epochs=1, log_every=10_000, progress=False)
    assert len(waited) == steps - MAX_STEPS_IN_FLIGHT


@pytest.mark.parametrize("logged, expected", [({"val_accuracy": 0.5, "val_loss": 1.0}, "val_accuracy"),
                                               ({"val_loss": 1.0, "val_rmse": 2.0}, "val_loss")])
def test_the_auto_monitor_follows_accuracy_when_logged_else_the_loss(logged, expected):
    tracker = EarlyStopping(monitor="auto", patience=None)
    assert tracker.update(1, logged) and tracker.monitor == expected
    worse = {k: (v * 0.5 if k == "val_accuracy" else v * 2) for k, v in logged.items()}
    assert not tracker.update(2, worse) and tracker.best_epoch == 1  # lower accuracy / higher loss is worse
    policy = checkpoint.CheckpointPolicy(best_metric="auto")
    ranked = checkpoint.Checkpointer._metric(type("C", (), {"policy": policy})(), logged)
    assert ranked > checkpoint.Checkpointer._metric(type("C", (), {"policy": policy})(), worse)
