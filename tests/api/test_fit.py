"""`jaxdl.fit` on users' own models and data: every model convention, pytree inputs, batches, validation
splits, own losses and metrics, probability outputs, refusals at the boundary, and `predict`."""

import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxdl
from jaxdl.api.data import split_validation
from jaxdl.data.pipeline import ArrayDataset
from jaxdl.losses import mse

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUIET = dict(progress=False)


def _binary(n=200, features=6, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, features)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int32)


def _leaves(tree):
    return jax.tree.leaves(jax.device_get(tree))


def _assert_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_readme_quickstart_is_the_keras_snippet_in_15_lines_and_trains():
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "jaxdl.fit(" in b)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) <= 15 and sum("import jaxdl" in line for line in lines) == 1, block
    namespace: dict = {}
    exec(compile(block.replace("epochs=10", "epochs=10, progress=False"), "README.md", "exec"), namespace)
    run = namespace["run"]
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 10 for v in run.history.values())
    assert run.history["val_accuracy"][-1] > 0.85 and run.history["loss"][-1] < run.history["loss"][0]


class NoFlag(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))


class TrainKeyword(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1)(nn.Dropout(0.3, deterministic=not train)(nn.relu(nn.Dense(8)(x))))


class Deterministic(nn.Module):
    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        return nn.Dense(1)(nn.Dropout(0.3)(nn.relu(nn.Dense(8)(x)), deterministic=deterministic))


class BatchNormDropout(nn.Module):
    @nn.compact
    def __call__(self, x, training: bool = False):
        x = nn.BatchNorm(use_running_average=not training, momentum=0.8)(nn.Dense(8)(x))
        return nn.Dense(1)(nn.Dropout(0.3, deterministic=not training)(nn.relu(x)))


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(6, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.8, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.norm(self.hidden(x)))))


@pytest.mark.parametrize("make", [NoFlag, TrainKeyword, Deterministic, BatchNormDropout, lambda: NNXNet(nnx.Rngs(0))],
                         ids=["no_flag", "train", "deterministic", "batchnorm_dropout_training", "nnx"])
def test_every_model_convention_trains_and_predicts_in_inference_mode(make):
    x, y = _binary()
    run = jaxdl.fit(make(), (x, y), loss="binary_cross_entropy", epochs=8, batch_size=20, learning_rate=2e-2,
                    validation_split=0.25, **QUIET)
    assert run.history["loss"][-1] < run.history["loss"][0]
    assert run.history["val_accuracy"][-1] > 0.7
    # Inference mode: no dropout, running BatchNorm statistics, so predictions do not depend on the batch.
    np.testing.assert_allclose(run.predict(x, batch_size=7), run.predict(x, batch_size=64), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run.predict(x[:9]), run.predict(x[:9]))
    if run.state.batch_stats:  # the statistics moved from their initial values during training
        assert any(np.any(v != 0) and np.any(v != 1) for v in _leaves(run.state.batch_stats))


@pytest.mark.parametrize("module", [NoFlag(), Deterministic(), BatchNormDropout()])
def test_a_wrapped_linen_module_keeps_its_own_parameter_paths_and_outputs(module):
    x, _ = _binary(8)
    adapted = jaxdl.fit.__globals__["as_model"](module)
    flag = {"deterministic": True} if isinstance(module, Deterministic) else {}
    mine = module.init(jax.random.PRNGKey(0), x, **flag)
    theirs = adapted.init(jax.random.PRNGKey(0), x, train=False)
    assert jax.tree.structure(mine) == jax.tree.structure(theirs)
    _assert_equal(mine, theirs)
    np.testing.assert_array_equal(module.apply(mine, x, **flag), adapted.apply(theirs, x, train=False))


class TwoInputs(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(jnp.concatenate([nn.Dense(4)(x["numbers"]), nn.Embed(5, 4)(x["category"])], axis=-1))


def test_dict_inputs_batches_and_arrays_train_alike():
    x, y = _binary(120)
    inputs = {"numbers": x, "category": (np.abs(x[:, 2]) * 2).astype(np.int32) % 5}
    arrays = jaxdl.fit(TwoInputs(), (inputs, y), loss="binary_cross_entropy", epochs=2, batch_size=16, **QUIET)
    batches = [({k: v[i:i + 30] for k, v in inputs.items()}, y[i:i + 30]) for i in range(0, 120, 30)]
    from_batches = jaxdl.fit(TwoInputs(), lambda: iter(batches), loss="binary_cross_entropy", epochs=2, batch_size=16,
                             **QUIET)
    _assert_equal(arrays.state.params, from_batches.state.params)
    assert arrays.predict(inputs).shape == (120, 1)


def test_validation_split_holds_out_the_last_fraction_as_validation_data_would():
    x, y = _binary(100)
    train, validation = split_validation(ArrayDataset(x, y), 0.2)
    np.testing.assert_array_equal(validation.x, x[80:])
    split = jaxdl.fit(NoFlag(), (x, y), loss="binary_cross_entropy", epochs=2, validation_split=0.2, **QUIET)
    given = jaxdl.fit(NoFlag(), (x[:80], y[:80]), loss="binary_cross_entropy", epochs=2,
                      validation_data=(x[80:], y[80:]), **QUIET)
    assert split.history == given.history
    _assert_equal(split.state.params, given.state.params)


def test_an_own_loss_function_and_metric_train_as_the_named_ones():
    x = np.random.default_rng(1).normal(size=(96, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32))

    def squared_error(outputs, targets):
        return jnp.mean(jnp.square(outputs - targets), axis=-1)

    def absolute_error(outputs, targets):
        return jnp.mean(jnp.abs(outputs - targets), axis=-1)

    named = jaxdl.fit(NoFlag(), (x, y), loss="mse", epochs=3, **QUIET)
    own = jaxdl.fit(NoFlag(), (x, y), loss=squared_error, metrics=[absolute_error], epochs=3, **QUIET)
    _assert_equal(named.state.params, own.state.params)
    assert set(own.history) == {"loss", "absolute_error"}
    predictions = own.predict(x)
    assert own.evaluate((x, y))["absolute_error"] == pytest.approx(float(np.mean(np.abs(predictions - y))), rel=1e-5)
    np.testing.assert_allclose(own.evaluate((x, y))["loss"], float(np.mean(mse(jnp.asarray(predictions), jnp.asarray(y)))),
                               rtol=1e-5)


class Head(nn.Module):
    sigmoid: bool = False

    @nn.compact
    def __call__(self, x):
        logits = nn.Dense(1)(nn.relu(nn.Dense(8)(x)))
        return nn.sigmoid(logits) if self.sigmoid else logits


def test_probability_outputs_train_with_from_logits_false_and_warn_without_it():
    x, y = _binary()
    probabilities = jaxdl.fit(Head(sigmoid=True), (x, y), loss="binary_crossentropy", from_logits=False, epochs=5,
                              learning_rate=1e-2, **QUIET)
    logits = jaxdl.fit(Head(), (x, y), loss="binary_crossentropy", epochs=5, learning_rate=1e-2, **QUIET)
    # The same network and initialisation: the clipped-probability loss equals the logit loss.
    np.testing.assert_allclose(probabilities.history["loss"], logits.history["loss"], rtol=2e-3)
    assert probabilities.history["accuracy"][-1] > 0.8
    with pytest.warns(UserWarning, match="look like probabilities .* pass from_logits=False"):
        jaxdl.fit(Head(sigmoid=True), (x, y), loss="binary_cross_entropy", epochs=1, **QUIET)


def test_bad_data_losses_and_metrics_are_refused_naming_the_fault():
    x, y = _binary(50)
    bad_x = x.copy()
    bad_x[17, 3] = np.nan
    with pytest.raises(ValueError, match=r"x has nan at index \(17, 3\)"):
        jaxdl.fit(NoFlag(), (bad_x, y), loss="binary_cross_entropy", epochs=1, **QUIET)
    bad_y = y.copy()
    bad_y[4] = 2
    with pytest.raises(ValueError, match=r"data label 2 at index 4 is outside \[0, 2\)"):
        jaxdl.fit(NoFlag(), (x, bad_y), loss="binary_cross_entropy", epochs=1, **QUIET)
    soft_y = y.astype(np.float32)
    soft_y[9] = 2.0
    with pytest.raises(ValueError, match=r"data label 2.0 at index 9 is outside \[0, 1\]"):
        jaxdl.fit(NoFlag(), (x, soft_y), loss="binary_cross_entropy", epochs=1, **QUIET)
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid names are"):
        jaxdl.fit(NoFlag(), (x, y), loss="hinge", epochs=1, **QUIET)
    with pytest.raises(ValueError, match=r"metrics \['auc'\] are not computed for this loss; available: .*accuracy"):
        jaxdl.fit(NoFlag(), (x, y), loss="binary_cross_entropy", metrics=["auc"], epochs=1, **QUIET)
    with pytest.raises(ValueError, match="validation_split must be in"):
        jaxdl.fit(NoFlag(), (x, y), loss="binary_cross_entropy", validation_split=1.0, epochs=1, **QUIET)
    with pytest.raises(ValueError, match="x has 50 examples but y has 49"):
        jaxdl.fit(NoFlag(), (x, y[:49]), loss="binary_cross_entropy", epochs=1, **QUIET)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1, got 0"):
        jaxdl.fit(NoFlag(), (x, y), loss="binary_cross_entropy", epochs=0, **QUIET)


class _CountingNet(nn.Module):
    """A module with state of its own beside BatchNorm's: a call counter and a running mean of its inputs."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        calls = self.variable("counts", "calls", lambda: jnp.zeros((), jnp.int32))
        mean = self.variable("stats", "mean", lambda: jnp.zeros(x.shape[-1]))
        if train and not self.is_initializing():
            calls.value += 1
            mean.value = 0.5 * mean.value + 0.5 * x.mean(0)
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
        return nn.Dense(2)(nn.relu(x))


def test_a_linen_models_own_collections_are_carried_and_updated_by_each_step():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    run = jaxdl.fit(_CountingNet(), (x, y), loss="softmax_cross_entropy", epochs=3, batch_size=16, progress=False)
    state = jax.device_get(run.state.batch_stats)
    assert int(state["counts"]["calls"]) == 3 * 4 == int(run.state.step)  # one call per training step, none in evaluation
    assert set(state) == {"counts", "stats", "batch_stats"} and np.any(state["stats"]["mean"] != 0)
    assert "BatchNorm_0" in state["batch_stats"] and "linen" in run.state.params
    before = jax.device_get(run.state)
    run.predict(x)  # inference changes nothing
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(run.state))):
        np.testing.assert_array_equal(a, b)
