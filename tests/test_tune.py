"""k-fold and hyperparameter search: vmapped trials equal the same trials trained alone."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.config import default_config
from jaxdl.data.base import DatasetSplits
from jaxdl.data.test_time import compose_views
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.models import MLP
from jaxdl.training.optimizers import make_optimizer, set_hyperparams
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step, make_train_step
from jaxdl.tune import (
    cross_validate,
    ensemble_probabilities,
    fit_stacked,
    fold_splits,
    grid_trials,
    parse_grid,
    random_trials,
    run_search,
    stack,
    stratified_kfold,
    train_ensemble,
    unstack,
)
from jaxdl.tune.run import run_tuning
from jaxdl.tune.stacked import choose_schedule
from tests.training.helpers import blobs


def _close(a, b, rtol=2e-5, atol=2e-6):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


@settings(max_examples=15)
@given(st.integers(2, 6), st.lists(st.integers(6, 30), min_size=2, max_size=4), st.integers(0, 10**6))
def test_stratified_kfold_partitions_and_keeps_class_proportions(k, class_sizes, seed):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(class_sizes)])
    folds = stratified_kfold(labels, k, seed)
    everything = np.concatenate(folds)
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and complete
    for fold in folds:
        for c, n in enumerate(class_sizes):
            assert abs(np.sum(labels[fold] == c) - n / k) < 1  # within one example per class
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_rejects_k_larger_than_the_smallest_class():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match=r"class 1 has 3 examples.*k <= 3"):
        stratified_kfold(labels, 4, 0)
    with pytest.raises(ValueError, match="k >= 2"):
        stratified_kfold(labels, 1, 0)


def _splits(n=120, seed=0):
    return DatasetSplits(blobs(n, seed), blobs(n // 4, seed + 1), blobs(40, seed + 2), 3, ("a", "b", "c"), "blobs")


def _config(**train):
    config = default_config()
    config.model = {"name": "mlp", "hidden_sizes": (8,), "dropout_rate": 0.1}
    config.data.batch_size = 16
    config.data.eval_batch_size = 32
    config.optimizer.learning_rate = 0.01
    config.train.num_epochs = 2
    config.train.update(train)
    return config


def test_vmapped_kfold_equals_the_folds_trained_one_by_one():
    data = _splits()
    together = cross_validate(_config(), k=3, data=data, schedule="vmap")
    alone = cross_validate(_config(), k=3, data=data, schedule="sequential")
    _close(together.result.states.params, alone.result.states.params)
    for a, b in zip(together.folds, alone.folds):
        assert a["count"] == b["count"] and a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
    # Every pool example is validated exactly once across the folds.
    assert sum(f["count"] for f in together.folds) == len(data.train) + len(data.validation)
    assert together.mean["accuracy"] == pytest.approx(np.mean([f["accuracy"] for f in together.folds]))
    assert len(fold_splits(data, 3, 0)) == 3


def test_a_vmapped_learning_rate_trial_equals_the_same_trial_trained_alone():
    model = MLP(hidden_sizes=(8,), num_outputs=3)
    metrics = classification_metrics(3)
    rates = [0.3, 0.03, 0.003]
    config = {"name": "momentum", "learning_rate": 0.1, "schedule": "cosine", "weight_decay": 1e-3}
    tx, _ = make_optimizer(config, 4, 2, tunable=True)
    init = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    states = stack([init.replace(opt_state=set_hyperparams(init.opt_state, learning_rate=r)) for r in rates])
    data = blobs(64, seed=3)
    together = fit_stacked(states, make_train_step(model, softmax_cross_entropy, metrics, tx),
                           make_eval_step(model, softmax_cross_entropy, metrics),
                           lambda epoch: data.train_batches(16, 0, epoch), num_epochs=2, schedule="vmap")
    for i, rate in enumerate(rates):
        plain_tx, _ = make_optimizer({**config, "learning_rate": rate}, 4, 2)
        state = create_train_state(model, plain_tx, jnp.zeros((1, 4, 4, 1)), 0)
        step = jax.jit(make_train_step(model, softmax_cross_entropy, metrics, plain_tx))
        for epoch in (1, 2):
            for batch in data.train_batches(16, 0, epoch):
                state, _ = step(state, batch)
        _close(unstack(together.states, i).params, state.params)


def _lr_trials(rates=(0.3, 0.03, 0.003)):
    """Stacked momentum trials of a small MLP on blobs, and the arguments `fit_stacked` takes for them."""
    model, metrics = MLP(hidden_sizes=(8,), num_outputs=3), classification_metrics(3)
    tx, _ = make_optimizer({"name": "momentum", "learning_rate": 0.1}, 4, 2, tunable=True)
    init = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), 0)
    states = stack([init.replace(opt_state=set_hyperparams(init.opt_state, learning_rate=r)) for r in rates])
    data = blobs(64, seed=3)
    steps = (make_train_step(model, softmax_cross_entropy, metrics, tx), make_eval_step(model, softmax_cross_entropy, metrics))
    return states, *steps, lambda epoch: data.train_batches(16, 0, epoch)


@settings(max_examples=100)
@given(vmap_ms=st.floats(0.01, 1e4), ratio=st.floats(0.01, 100.0), scale=st.floats(0.01, 100.0),
       faster=st.floats(0.01, 1.0))
def test_the_schedule_choice_favours_vmap_on_ties_and_is_monotone_and_scale_free(vmap_ms, ratio, scale, faster):
    """The one vmapped program also reads each batch once and dispatches once: sequential must win clearly."""
    def choice(vmap, sequential):
        return choose_schedule({"vmap": vmap, "sequential": sequential})

    sequential_ms = vmap_ms * ratio
    if ratio >= 0.95:  # a tie, or slower: vmap
        assert choice(vmap_ms, sequential_ms) == "vmap"
    if ratio <= 0.5:  # twice as fast: sequential
        assert choice(vmap_ms, sequential_ms) == "sequential"
    assert choice(vmap_ms * scale, sequential_ms * scale) == choice(vmap_ms, sequential_ms)  # units do not matter
    if choice(vmap_ms, sequential_ms) == "sequential":  # a faster sequential step never flips the choice back
        assert choice(vmap_ms, sequential_ms * faster) == "sequential"


@pytest.mark.parametrize(("vmap_ms", "sequential_ms", "expected"), [(10.0, 5.0, "sequential"), (10.0, 9.5, "vmap")])
def test_auto_schedule_runs_what_the_timing_says_and_trains_the_same(monkeypatch, vmap_ms, sequential_ms, expected):
    states, train_step, eval_step, batches = _lr_trials()
    monkeypatch.setattr("jaxdl.tune.stacked.measure_schedules",
                        lambda *args: {"vmap": vmap_ms, "sequential": sequential_ms})
    auto = fit_stacked(jax.tree.map(jnp.copy, states), train_step, eval_step, batches, 2, schedule="auto")
    assert auto.schedule == expected and auto.step_ms == {"vmap": vmap_ms, "sequential": sequential_ms}
    chosen = fit_stacked(jax.tree.map(jnp.copy, states), train_step, eval_step, batches, 2, schedule=expected)
    assert chosen.schedule == expected and chosen.step_ms is None
    for a, b in zip(jax.tree.leaves(auto.states.params), jax.tree.leaves(chosen.states.params)):
        np.testing.assert_array_equal(a, b)  # the same program on the same batches: bitwise
    assert auto.history == chosen.history


def test_measuring_the_schedules_times_both_on_copies_and_trains_nothing_twice():
    # Were the timing steps taken on the real states, they would be donated (training would fail) or trained
    # a few extra steps (the result would differ from the reference).
    states, train_step, eval_step, batches = _lr_trials()
    reference = fit_stacked(jax.tree.map(jnp.copy, states), train_step, eval_step, batches, 1, schedule="sequential")
    result = fit_stacked(states, train_step, eval_step, batches, 1, schedule="auto")
    assert set(result.step_ms) == {"vmap", "sequential"} and result.schedule in ("vmap", "sequential")
    assert all(np.isfinite(ms) and ms > 0 for ms in result.step_ms.values())
    _close(result.states.params, reference.states.params)


def test_an_unknown_schedule_is_refused_naming_the_valid_ones(tmp_path):
    states, train_step, eval_step, batches = _lr_trials()
    with pytest.raises(ValueError, match=r"unknown schedule 'parallel'; valid: \['auto', 'vmap', 'sequential'\]"):
        fit_stacked(states, train_step, eval_step, batches, 1, schedule="parallel")
    config = _config()
    config.search.kind, config.search.schedule = "kfold", "parallel"
    with pytest.raises(ValueError, match=r"config.search.schedule is 'parallel'; valid: \['auto', 'vmap', 'sequential'\]"):
        run_tuning(config, tmp_path)


def test_grid_random_and_bad_search_spaces():
    space = parse_grid(["optimizer.learning_rate=1e-3,1e-2", "config.model.dropout_rate=0.0,0.5"])
    trials = grid_trials(space)
    assert len(trials) == 4 and {"optimizer.learning_rate": 1e-2, "model.dropout_rate": 0.5} in trials
    with pytest.raises(ValueError, match="grid is empty"):
        grid_trials({"optimizer.learning_rate": []})
    with pytest.raises(ValueError, match="looks like field.path=v1,v2"):
        parse_grid(["optimizer.learning_rate="])
    drawn = random_trials({"optimizer.learning_rate": "loguniform(1e-4, 1e-2)", "model.dropout_rate": "choice(0.0, 0.3)"}, 20, 1)
    assert drawn == random_trials({"optimizer.learning_rate": "loguniform(1e-4, 1e-2)", "model.dropout_rate": "choice(0.0, 0.3)"}, 20, 1)
    assert all(1e-4 <= t["optimizer.learning_rate"] <= 1e-2 and t["model.dropout_rate"] in (0.0, 0.3) for t in drawn)
    with pytest.raises(ValueError, match="unknown distribution 'gaussian'"):
        random_trials({"optimizer.learning_rate": "gaussian(0, 1)"}, 2, 0)
    with pytest.raises(ValueError, match="config has no field 'optimizer.learning_rat'"):
        run_search(_config(), [{"optimizer.learning_rat": 0.1}])


def test_search_ranks_trials_writes_its_table_and_puts_a_diverged_trial_last(tmp_path, monkeypatch):
    data = _splits()
    monkeypatch.setattr("jaxdl.tune.search.load_dataset", lambda config: data)
    trials = [{"optimizer.learning_rate": lr, "model.dropout_rate": d} for lr in (1e-2, 1e30) for d in (0.0, 0.2)]
    result = run_search(_config(num_epochs=1), trials, workdir=tmp_path)
    assert {row["group"] for row in result.rows} == {0, 1}  # two dropout rates: two programs, lr vmapped in each
    assert [row["optimizer.learning_rate"] for row in result.rows[-2:]] == [1e30, 1e30]
    assert all(row["diverged"] and np.isnan(row["best_val_accuracy"]) for row in result.rows[-2:])
    scores = [row["best_val_accuracy"] for row in result.rows if not np.isnan(row["best_val_accuracy"])]
    assert scores == sorted(scores, reverse=True)
    saved = json.loads((tmp_path / "search.json").read_text())
    assert len(saved["trials"]) == 4 and (tmp_path / "search.csv").is_file() and (tmp_path / "search.png").is_file()


def test_a_vmapped_ensemble_equals_its_members_trained_alone_and_averages_their_probabilities():
    data = _splits()
    together = train_ensemble(_config(), members=3, data=data, schedule="vmap")
    alone = train_ensemble(_config(), members=3, data=data, schedule="sequential")
    _close(together.result.states.params, alone.result.states.params)
    assert together.member_accuracy == pytest.approx(alone.member_accuracy, abs=1e-9)
    model = MLP(hidden_sizes=(8,), num_outputs=3, dropout_rate=0.1)
    x = jnp.asarray(data.test.x[:7])
    by_hand = np.mean([jax.nn.softmax(model.apply(unstack(together.result.states, i).variables(), x), -1)
                       for i in range(3)], axis=0)
    for schedule in ("vmap", "sequential"):  # members predicted as one batched program or one at a time
        probs = ensemble_probabilities(model, together.result.states, x, schedule=schedule)
        np.testing.assert_allclose(probs, by_hand, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"unknown schedule 'auto' for member predictions; valid: \['vmap', 'sequential'\]"):
        ensemble_probabilities(model, together.result.states, x, schedule="auto")
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # Members start from different seeds: they are different models.
    first, second = unstack(together.result.states, 0).params, unstack(together.result.states, 1).params
    assert not np.allclose(jax.tree.leaves(first)[0], jax.tree.leaves(second)[0])


def test_an_ensemble_over_test_time_views_averages_every_member_over_every_view():
    """``data.test_time_augment`` in an ensemble: the reported accuracies are those of the members' and the
    ensemble's probabilities averaged over the views, computed here member by member and view by view."""
    data = _splits()
    config = _config()
    config.data.test_time_augment = ("horizontal_flip", "shifts")
    result = train_ensemble(config, members=2, data=data)
    model = MLP(hidden_sizes=(8,), num_outputs=3, dropout_rate=0.1)
    x, labels = jnp.asarray(data.test.x), np.asarray(data.test.y)
    by_hand = np.array([[jax.nn.softmax(model.apply(unstack(result.result.states, i).variables(), view(x)), -1)
                         for view in compose_views(config.data.test_time_augment)] for i in range(2)]).mean(axis=1)
    assert len(compose_views(config.data.test_time_augment)) == 10
    assert result.member_accuracy == pytest.approx([float(np.mean(p.argmax(-1) == labels)) for p in by_hand])
    assert result.ensemble_accuracy == pytest.approx(float(np.mean(by_hand.mean(0).argmax(-1) == labels)))
    single = np.array([jax.nn.softmax(model.apply(unstack(result.result.states, i).variables(), x), -1) for i in range(2)])
    assert not np.allclose(single, by_hand, atol=1e-3)  # the views change the probabilities the accuracies come from
