"""The step's gradient, update and parameter norms against the same norms computed outside the step."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.pipeline import train_batches
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP
from jaxdl.training.loop import fit
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step, make_train_step
from jaxdl.training.step_norms import LogWindows, StepNorms, TrainMetrics, norms_at_window_ends, task_metrics
from tests.training.helpers import blobs

OPTIMIZERS = [{"name": "sgd", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 1e-2},
              {"name": "adamw", "learning_rate": 1e-2, "weight_decay": 0.1, "clip_norm": 0.5}]


def _flat_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(tree))))


@settings(max_examples=6)
@given(optimizer=st.sampled_from(OPTIMIZERS), seed=st.integers(0, 1000), accumulation=st.sampled_from([1, 2]))
def test_norms_equal_the_ones_computed_outside_the_step(optimizer, seed, accumulation):
    model = MLP(hidden_sizes=(8,), num_outputs=3)  # no dropout: the outside gradient sees the same function
    tx, _ = make_optimizer(optimizer, 10, 2)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), seed)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx,
                                   accumulation_steps=accumulation))
    batch = next(train_batches(blobs(16, seed=seed), 16, seed=0, epoch=0))

    def mean_loss(params):
        return jnp.mean(softmax_cross_entropy(model.apply({"params": params}, batch["x"]), batch["y"]))

    grads = jax.grad(mean_loss)(state.params)
    before = jax.device_get(state.params)
    new_state, metrics = step(state, batch)
    after = jax.device_get(new_state.params)
    values = metrics.compute()
    np.testing.assert_allclose(values["grad_norm"], _flat_norm(grads), rtol=1e-4)
    np.testing.assert_allclose(values["update_norm"], _flat_norm(jax.tree.map(np.subtract, after, before)),
                               rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(values["param_norm"], _flat_norm(after), rtol=1e-5)
    assert values["count"] == 16 and np.isfinite(values["loss"])


def test_a_window_reports_the_mean_norms_of_its_steps():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx = optax.sgd(0.1)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))
    window, per_step = None, []
    for batch in train_batches(blobs(64, seed=3), 16, seed=0, epoch=0):
        state, metrics = step(state, batch)
        per_step.append(metrics.compute()["grad_norm"])
        window = metrics if window is None else window.merge(metrics)
    assert len(set(per_step)) > 1
    np.testing.assert_allclose(window.compute()["grad_norm"], np.mean(per_step), rtol=1e-5)
    assert window.compute()["count"] == 64


def test_norms_off_returns_the_task_sums_alone():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx = optax.sgd(0.1)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    batch = next(train_batches(blobs(16), 16, seed=0, epoch=0))
    with_norms = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx))(state, batch)[1]
    plain = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx, norms=False))(
        state, batch)[1]
    assert isinstance(with_norms, TrainMetrics) and not isinstance(plain, TrainMetrics)
    jax.tree.map(np.testing.assert_array_equal, task_metrics(with_norms), plain)
    assert with_norms.loss_sum == plain.loss_sum  # the task's fields read through


def _steps(model, tx, **kwargs):
    return jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx, **kwargs))


@settings(max_examples=5)
@given(optimizer=st.sampled_from(OPTIMIZERS), log_every=st.integers(1, 4), steps_per_epoch=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_windowed_norms_are_the_every_step_norms_on_the_steps_that_close_a_window(optimizer, log_every,
                                                                               steps_per_epoch, seed):
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx, _ = make_optimizer(optimizer, 10, 2)
    windows = LogWindows(log_every, steps_per_epoch)
    windowed, every, plain = (_steps(model, tx, norms_at=windows), _steps(model, tx),
                              _steps(model, tx, norms=False))
    states = [create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), seed) for _ in range(3)]
    for step, batch in enumerate(train_batches(blobs(16 * 7, seed=seed), 16, seed=0, epoch=0)):
        (states[0], measured), (states[1], reference), (states[2], _) = (
            f(s, batch) for f, s in zip((windowed, every, plain), states))
        # Measuring never changes the training: the state stays the norm-free step's (to the last bit or two:
        # XLA fuses the update differently around the added zero).
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)  # noqa: E731
        jax.tree.map(close, states[0].params, states[2].params)
        jax.tree.map(close, states[0].opt_state, states[2].opt_state)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), task_metrics(measured),
                     task_metrics(reference))
        closes = bool(windows.closes_step(step))
        assert closes == (((step % steps_per_epoch) + 1) % log_every == 0 or (step % steps_per_epoch) + 1 == steps_per_epoch)
        values, expected = measured.compute(), reference.compute()
        if closes:
            for name in ("grad_norm", "update_norm", "param_norm"):
                np.testing.assert_allclose(values[name], expected[name], rtol=1e-5, atol=1e-8)
        else:
            assert int(measured.norms.steps) == 0 and "grad_norm" not in values


def test_the_loop_logs_on_exactly_the_steps_that_measure_the_norms(tmp_path):
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-2}, 10, 2)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    windows = LogWindows(log_every=2, steps_per_epoch=5)  # 80 rows / 16: the epoch's last window is one step
    step = _steps(model, tx, norms_at=windows)
    eval_step = jax.jit(make_eval_step(model, softmax_cross_entropy, classification_metrics(3)))
    fit(state, train_step=step, eval_step=eval_step, train_data=blobs(80), batch_size=16, num_epochs=2,
        progress=False, workdir=tmp_path / "run", log_every=windows.log_every)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 5, 7, 9, 10]
    assert all(r["grad_norm"] > 0 and r["update_norm"] > 0 and r["param_norm"] > 0 for r in train)


def test_a_window_without_a_measured_step_reports_no_norms():
    assert StepNorms.unmeasured().compute() == {}
    measured = StepNorms(*(jnp.asarray(v, jnp.float32) for v in (2.0, 4.0, 6.0)), jnp.asarray(2, jnp.int32))
    assert measured.merge(StepNorms.unmeasured()).compute() == {"grad_norm": 1.0, "update_norm": 2.0, "param_norm": 3.0}


def test_an_overflowing_norm_leaves_the_gradients_untouched():
    # A float32 sum of squares overflows to inf: the gradients handed on must stay what they were (no NaN).
    grads = {"w": jnp.full((4,), 1e30, jnp.float32)}
    norms, handed_on = norms_at_window_ends(LogWindows(1), jnp.asarray(0), grads, grads, (), lambda g, o, p: g)
    assert np.isinf(float(norms.grad_norm_sum))
    np.testing.assert_array_equal(handed_on["w"], grads["w"])


def _entry_copies(compiled_text: str) -> int:
    """Copies of the program's float parameters (the donated state) in compiled HLO."""
    return len(re.findall(r"= f32\[[^\]]*\]\{[^}]*\} copy\(%state_", compiled_text))


def test_measuring_at_window_ends_copies_no_more_of_the_state_than_no_norms():
    # The condition reads the old parameters and optimizer state, which the step updates in place: unless the
    # update is ordered after it, XLA copies the whole state every step (the cost the windows exist to avoid).
    model = MLP(hidden_sizes=(64, 64), num_outputs=3)
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-3}, 10, 2)
    state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    batch = next(train_batches(blobs(16), 16, seed=0, epoch=0))

    def copies(**kwargs):
        step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(3), tx, **kwargs),
                       donate_argnums=0)
        text = step.lower(state, batch).compile().as_text()
        # The count is only meaningful if the state's parameters carry the names it looks for.
        assert len(re.findall(r"%state_\S* = f32\[[^\]]*\]\{[^}]*\} parameter\(", text)) >= 6
        return _entry_copies(text)

    assert copies(norms_at=LogWindows(50, 100)) <= copies(norms=False)
