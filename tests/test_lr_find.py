"""The learning-rate range test: every vmapped trial equals the same rate trained alone; divergence and the
suggestion follow their definitions; the command writes its files."""

import json
import pathlib

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.cli import main
from jaxdl.experiment.build import build_experiment
from jaxdl.training.step_norms import task_metrics
from jaxdl.tune import find_learning_rate
from jaxdl.tune.lr_find import DIVERGENCE_FACTOR, _batches, _constant_rate, judge, range_test_losses
from tests.test_tune import _config, _splits

ROOT = pathlib.Path(__file__).parents[1]


def _alone(config, rate, steps, data):
    """The losses of one ordinary (untunable) run at a constant ``rate``, step by step."""
    config = _constant_rate(config)
    config.optimizer.learning_rate = rate
    exp = build_experiment(config, data=data)
    step = jax.jit(exp.pure_train_step)
    state, losses = exp.state, []
    for batch in _batches(exp.data.train, config.data.batch_size, config.data.seed, steps):
        state, metrics = step(state, batch)
        sums = task_metrics(metrics)
        losses.append(float(sums.loss_sum) / float(sums.count))
    return np.array(losses)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_each_trial_of_the_range_test_equals_its_rate_trained_alone(optimizer):
    config, data = _config(), _splits()
    config.optimizer.name = optimizer
    config.optimizer.schedule = "cosine"  # set aside by the test: every rate stays constant
    rates = np.array([3e-3, 3e-2, 0.3])
    steps = 17  # more than one epoch of 120 examples in batches of 16: the epochs' orders are followed too
    together = range_test_losses(config, rates, steps, data)
    assert together.shape == (3, steps)
    for trial, rate in enumerate(rates):
        np.testing.assert_allclose(together[trial], _alone(config, float(rate), steps, data), rtol=2e-5, atol=2e-6)


@given(st.integers(2, 6), st.integers(5, 40), st.integers(0, 10**6))
def test_judge_cuts_curves_at_divergence_and_suggests_the_lowest_finishing_rate(trials, steps, seed):
    rng = np.random.default_rng(seed)
    rates = np.geomspace(1e-4, 1.0, trials)
    losses = rng.uniform(0.5, 2.0, (trials, steps))
    blow_up = rng.integers(1, steps, trials)  # where each trial might diverge
    kind = rng.integers(0, 3, trials)  # 0: trains, 1: exceeds the divergence bound, 2: NaN
    for t in range(trials):
        if kind[t] == 1:
            losses[t, blow_up[t]] = DIVERGENCE_FACTOR * losses[t, 0] * 1.01
        elif kind[t] == 2:
            losses[t, blow_up[t]] = np.nan
    result = judge(rates, losses)
    tail = max(steps // 5, 1)
    for t in range(trials):
        assert result.diverged[t] == (kind[t] != 0)
        if kind[t]:
            assert np.isnan(result.losses[t, blow_up[t]:]).all() and np.isnan(result.final_loss[t])
            np.testing.assert_array_equal(result.losses[t, :blow_up[t]], losses[t, :blow_up[t]])
        else:
            assert result.final_loss[t] == pytest.approx(losses[t, -tail:].mean())
    finishing = [t for t in range(trials) if kind[t] == 0]
    if finishing:
        best = min(finishing, key=lambda t: losses[t, -tail:].mean())
        assert result.suggested == rates[best]
    else:
        assert result.suggested is None
    json.dumps(result.summary())  # NaN never reaches the JSON file: diverged trials have final_loss None
    assert all((row["final_loss"] is None) == row["diverged"] for row in result.summary()["trials"])


def test_find_learning_rate_writes_its_files_and_refuses_bad_ranges(tmp_path):
    result = find_learning_rate(_config(), 1e-3, 30.0, 4, 8, workdir=tmp_path, data=_splits())
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggested_learning_rate"] == result.suggested and result.suggested in result.rates
    assert [row["learning_rate"] for row in saved["trials"]] == pytest.approx(list(np.geomspace(1e-3, 30.0, 4)))
    assert (tmp_path / "lr_find.png").stat().st_size > 0
    with pytest.raises(ValueError, match="0 < min_rate < max_rate"):
        find_learning_rate(_config(), 1.0, 0.1, data=_splits())
    with pytest.raises(ValueError, match="num_rates >= 2"):
        find_learning_rate(_config(), num_rates=1, data=_splits())
    config = _config()
    config.data.batch_size = 1000
    with pytest.raises(ValueError, match="batch_size 1000 .*120 training examples"):
        find_learning_rate(config, steps=2, data=_splits())


def test_the_lr_find_command_runs_an_experiment_file(tmp_path, capsys):
    workdir = tmp_path / "lr"
    assert main(["lr-find", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir), "--num-rates", "3",
                 "--steps", "3", "--config.data.train_limit=256", "--config.data.batch_size=64"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((workdir / "lr_find.json").read_text()) and len(printed["trials"]) == 3
