"""The hook protocol: which methods the loop calls, when, in what order, and what hooks may change."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.checkpoint import Checkpointer, CheckpointPolicy
from jaxdl.distributed.parallel import compile_eval_step, compile_train_step
from jaxdl.training.hooks import Hook, as_hook
from jaxdl.training.loop import fit
from tests.training.helpers import blobs, small_setup


class Recorder(Hook):
    """Writes down every call with what the loop says at that moment."""

    def __init__(self, want_steps=()):
        self.calls, self.want_steps = [], set(want_steps)

    def on_fit_start(self, loop):
        self.calls.append(("fit_start", loop.epoch, loop.batch))

    def on_epoch_start(self, loop):
        self.calls.append(("epoch_start", loop.epoch, loop.batch))

    def wants_metrics(self, loop):
        return loop.step in self.want_steps

    def on_step(self, loop):
        self.calls.append(("step", loop.epoch, loop.step))

    def on_metrics(self, loop, record):
        assert record["kind"] == "train" and record["step"] == loop.step and np.isfinite(record["loss"])
        self.calls.append(("metrics", loop.epoch, loop.step))

    def on_epoch_end(self, loop, row):
        assert row is loop.history[-1]
        self.calls.append(("epoch_end", loop.epoch, row["step"]))

    def on_fit_end(self, loop):
        self.calls.append(("fit_end", loop.epoch, loop.step))

    def on_error(self, loop, error):
        self.calls.append(("error", type(error).__name__, loop.step))


def _fit(hooks, n=96, batch_size=16, num_epochs=2, log_every=50, train_step=None, **kwargs):
    _, state, step, eval_step, _ = small_setup()
    return fit(state, train_step=train_step or compile_train_step(step), eval_step=compile_eval_step(eval_step),
               train_data=blobs(n), validation_data=blobs(20, seed=3), batch_size=batch_size, num_epochs=num_epochs,
               log_every=log_every, progress=False, hooks=hooks, **kwargs)


def _expected_calls(steps_per_epoch, num_epochs, synced):
    """The documented order, written out: per step `on_metrics` (when synced) comes before `on_step`."""
    calls, step = [("fit_start", 1, 0)], 0
    for epoch in range(1, num_epochs + 1):
        calls.append(("epoch_start", epoch, 0))
        for _ in range(steps_per_epoch):
            step += 1
            if synced(step, epoch):
                calls.append(("metrics", epoch, step))
            calls.append(("step", epoch, step))
        calls.append(("epoch_end", epoch, step))
    return calls + [("fit_end", num_epochs + 1, step)]


@settings(max_examples=6)
@given(steps_per_epoch=st.integers(1, 5), num_epochs=st.integers(1, 3), log_every=st.integers(1, 4),
       wanted=st.sets(st.integers(1, 15), max_size=3))
def test_hooks_are_called_in_the_documented_order(steps_per_epoch, num_epochs, log_every, wanted):
    recorder = Recorder(want_steps=wanted)
    result = _fit([recorder], n=16 * steps_per_epoch, num_epochs=num_epochs, log_every=log_every)

    def synced(step, epoch):
        batch = step - (epoch - 1) * steps_per_epoch
        return batch % log_every == 0 or batch == steps_per_epoch or step in wanted

    assert recorder.calls == _expected_calls(steps_per_epoch, num_epochs, synced)
    assert [row["step"] for row in result.history] == [steps_per_epoch * e for e in range(1, num_epochs + 1)]


def test_a_hook_that_stops_the_loop_ends_training_after_that_epoch(tmp_path):
    class StopAfterSecond(Hook):
        def on_epoch_end(self, loop, row):
            if loop.epoch == 2:
                loop.stop()

    recorder = Recorder()
    result = _fit([StopAfterSecond(), recorder], num_epochs=5, workdir=tmp_path)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert recorder.calls[-1][0] == "fit_end"
    # The verdict is in the checkpoint: resuming the run does not train a third epoch.
    resumed = _fit([], num_epochs=5, workdir=tmp_path, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]


def test_the_loop_error_reaches_every_hook_and_then_the_caller():
    _, state, step, _, _ = small_setup()
    compiled, calls = compile_train_step(step), []

    def failing_step(state, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the device went away")
        return compiled(state, batch)

    class BrokenCleanup(Hook):
        def on_error(self, loop, error):
            raise OSError("cannot close")

    recorder = Recorder()
    with pytest.warns(UserWarning, match="BrokenCleanup.on_error failed: cannot close"):
        with pytest.raises(RuntimeError, match="the device went away"):
            _fit([BrokenCleanup(), recorder], train_step=failing_step)
    assert recorder.calls[-1] == ("error", "RuntimeError", 2)
    assert not any(call[0] == "fit_end" for call in recorder.calls)


def test_a_nan_loss_stops_before_any_hook_sees_the_interval():
    _, state, step, _, _ = small_setup()
    compiled = compile_train_step(step)

    def nan_step(state, batch):
        state, metrics = compiled(state, batch)
        broken = metrics.task.replace(loss_sum=metrics.task.loss_sum * np.float32(np.nan))
        return state, metrics.replace(task=broken) if state.step >= 4 else metrics

    recorder = Recorder()
    with pytest.raises(FloatingPointError, match="training loss became nan at step 4"):
        _fit([recorder], train_step=nan_step, log_every=2)
    assert [c for c in recorder.calls if c[0] == "metrics"] == [("metrics", 1, 2)]


def test_wanting_metrics_brings_a_mid_epoch_checkpoint_its_sync(tmp_path):
    # every_steps=5 falls between logging intervals (log_every 50): the checkpoint hook asks for those syncs.
    recorder = Recorder()
    _fit([recorder], n=160, num_epochs=1, workdir=tmp_path, checkpoint_policy=CheckpointPolicy(every_steps=5))
    assert [c[2] for c in recorder.calls if c[0] == "metrics"] == [5, 10]
    assert Checkpointer(tmp_path / "checkpoints").steps()[-2:] == [5, 10]


def test_plain_functions_are_epoch_hooks_and_anything_else_is_refused():
    seen = []
    result = _fit([lambda epoch, row, state: seen.append((epoch, row["step"], int(jax.device_get(state.step))))])
    assert seen == [(row["epoch"], row["step"], row["step"]) for row in result.history]
    with pytest.raises(TypeError, match="a fit hook is a jaxdl.training.hooks.Hook or a function"):
        as_hook("learning_curves")
    with pytest.raises(TypeError, match="got 3"):
        _fit([3])
