import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.training.optimizers import OPTIMIZERS, make_optimizer, make_schedule, optimizer_update, set_hyperparams


def _params_and_grads(seed):
    rng = np.random.default_rng(seed)
    params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
                          "bias": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    return params, grads


def _step(config, params, grads, steps=1):
    tx, _ = make_optimizer(config, steps_per_epoch=10, num_epochs=1)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = optimizer_update(tx, grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@given(seed=st.integers(0, 1000), lr=st.floats(1e-4, 1.0))
def test_sgd_step_is_p_minus_lr_g(seed, lr):
    params, grads = _params_and_grads(seed)
    new = _step({"name": "sgd", "learning_rate": lr}, params, grads)
    jax.tree.map(lambda n, p, g: np.testing.assert_allclose(n, p - lr * g, rtol=1e-6, atol=1e-7), new, params, grads)


@given(seed=st.integers(0, 1000), lr=st.floats(1e-4, 0.1), b1=st.floats(0.5, 0.95), b2=st.floats(0.9, 0.9999))
def test_adam_two_steps_follow_the_update_formula(seed, lr, b1, b2):
    params, grads = _params_and_grads(seed)
    eps = 1e-8
    new = _step({"name": "adam", "learning_rate": lr, "b1": b1, "b2": b2, "eps": eps}, params, grads, steps=2)

    def by_hand(p, g):
        p, m, v = np.float64(p), 0.0, 0.0
        for t in (1, 2):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        return p

    # optax works in float32, where 1 - b2**t loses digits as b2 -> 1 (b2=0.9999: ~1e-5 relative), hence rtol 1e-4.
    jax.tree.map(lambda n, p, g: np.testing.assert_allclose(n, by_hand(np.asarray(p), np.asarray(g)), rtol=1e-4, atol=1e-6),
                 new, params, grads)


def test_momentum_accumulates_velocity():
    params, grads = _params_and_grads(0)
    new = _step({"name": "momentum", "learning_rate": 0.1, "momentum": 0.9}, params, grads, steps=2)
    # v1 = g, v2 = 0.9 g + g: two steps move by lr * (1 + 1.9) g.
    jax.tree.map(lambda n, p, g: np.testing.assert_allclose(n, p - 0.1 * 2.9 * g, rtol=1e-5), new, params, grads)


def test_weight_decay_reaches_kernels_only():
    params, _ = _params_and_grads(1)
    zeros = jax.tree.map(jnp.zeros_like, params)
    new = _step({"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.5}, params, zeros)
    np.testing.assert_allclose(new["Dense_0"]["kernel"], params["Dense_0"]["kernel"] * (1 - 0.05), rtol=1e-6)
    np.testing.assert_array_equal(new["Dense_0"]["bias"], params["Dense_0"]["bias"])
    new = _step({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}, params, zeros)
    np.testing.assert_allclose(new["Dense_0"]["kernel"], params["Dense_0"]["kernel"] * (1 - 0.05), rtol=1e-6)


def test_clipping_bounds_the_global_norm():
    params, grads = _params_and_grads(2)
    grads = jax.tree.map(lambda g: g * 100, grads)
    new = _step({"name": "sgd", "learning_rate": 1.0, "clip_norm": 1.0}, params, grads)
    moved = optax.tree.norm(jax.tree.map(jnp.subtract, new, params))
    np.testing.assert_allclose(moved, 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_decreases_a_quadratic(name):
    params = {"w": jnp.array([3.0, -2.0])}
    tx, _ = make_optimizer({"name": name, "learning_rate": 0.05}, 10, 1)
    state = tx.init(params)
    loss = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
    start = loss(params)
    for _ in range(20):
        updates, state = optimizer_update(tx, jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert loss(params) < start


def test_schedules_follow_their_definitions():
    const = make_schedule({"learning_rate": 0.1, "schedule": "constant"}, 10, 5)
    step = make_schedule({"learning_rate": 0.1, "schedule": "step", "decay_rate": 0.5, "decay_every_epochs": 2}, 10, 5)
    cos = make_schedule({"learning_rate": 0.1, "schedule": "cosine"}, 10, 5)
    warm = make_schedule({"learning_rate": 0.1, "schedule": "warmup_cosine", "warmup_epochs": 1}, 10, 5)
    assert float(const(37)) == pytest.approx(0.1)
    assert [float(step(s)) for s in (0, 19, 20, 40)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert float(cos(0)) == pytest.approx(0.1) and float(cos(25)) == pytest.approx(0.05) and float(cos(50)) == pytest.approx(0.0)
    assert float(warm(0)) == pytest.approx(0.0) and float(warm(5)) == pytest.approx(0.05) and float(warm(10)) == pytest.approx(0.1)


@pytest.mark.parametrize("config, message", [
    ({"name": "adam", "learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"name": "adam", "learning_rate": -1e-3}, "learning_rate must be > 0"),
    ({"name": "adagrad", "learning_rate": 1e-3}, "valid names are .*rmsprop"),
    ({"name": "adam", "learning_rate": 1e-3, "schedule": "linear"}, "valid names are .*warmup_cosine"),
])
def test_bad_optimizer_configs_are_explained(config, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(config, 10, 1)


@settings(max_examples=8)
@given(name=st.sampled_from(OPTIMIZERS), schedule=st.sampled_from(["constant", "cosine", "warmup_cosine"]),
       lr=st.floats(1e-3, 0.5), wd=st.sampled_from([0.0, 1e-2]), seed=st.integers(0, 1000))
def test_a_tunable_optimizer_set_to_a_value_equals_the_plain_optimizer_built_with_it(name, schedule, lr, wd, seed):
    params, grads = _params_and_grads(seed)
    base = {"name": name, "learning_rate": 0.1, "schedule": schedule, "weight_decay": 0.0, "clip_norm": 1.0}
    tx, _ = make_optimizer(base, steps_per_epoch=10, num_epochs=1, tunable=True)
    state = set_hyperparams(tx.init(params), learning_rate=lr, weight_decay=wd)
    tuned = params
    for _ in range(3):
        updates, state = optimizer_update(tx, grads, state, tuned)
        tuned = optax.apply_updates(tuned, updates)
    expected = _step({**base, "learning_rate": lr, "weight_decay": wd}, params, grads, steps=3)
    for a, b in zip(jax.tree.leaves(tuned), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError, match="valid ones are"):
        set_hyperparams(state, dropout=0.1)


def _plateau_scales(patience, epochs, learning_rate, steps_per_epoch=4):
    """The reduce-on-plateau scale after each epoch of training a Dense layer with ``learning_rate``."""
    import flax.linen as nn

    from jaxdl.losses import softmax_cross_entropy
    from jaxdl.metrics import classification_metrics
    from jaxdl.training.state import create_train_state
    from jaxdl.training.step import make_train_step

    tx, _ = make_optimizer({"name": "sgd", "learning_rate": learning_rate, "plateau_patience": patience,
                            "plateau_factor": 0.5}, steps_per_epoch, epochs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16 * steps_per_epoch, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    from jaxdl.models.adapter import as_model

    model = as_model(nn.Dense(2))
    state = create_train_state(model, tx, x[:1], 0)
    step = jax.jit(make_train_step(model, softmax_cross_entropy, classification_metrics(2), tx))
    scales = []
    for _ in range(epochs):
        for b in range(steps_per_epoch):
            rows = slice(16 * b, 16 * (b + 1))
            state, _ = step(state, {"x": x[rows], "y": y[rows], "mask": np.ones(16, bool)})
        scales.append(float(state.opt_state[-1].scale))
    return scales


def test_reduce_on_plateau_halves_the_rate_after_patience_flat_epochs_and_not_while_improving():
    # A rate of 1e-9 leaves the loss flat: the first epoch sets the best, then every epoch is a plateau epoch.
    assert _plateau_scales(patience=2, epochs=6, learning_rate=1e-9) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    # Learning steadily, the loss improves every epoch: the rate is never reduced.
    assert _plateau_scales(patience=2, epochs=6, learning_rate=0.1) == [1.0] * 6
    with pytest.raises(ValueError, match="plateau_patience must be >= 0"):
        make_optimizer({"name": "sgd", "learning_rate": 0.1, "plateau_patience": -1}, 4, 2)


def test_reduce_on_plateau_without_a_loss_to_watch_is_explained():
    tx, _ = make_optimizer({"name": "sgd", "learning_rate": 0.1, "plateau_patience": 2}, 4, 2)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs each batch's loss.*loss_sum and count"):
        optimizer_update(tx, params, tx.init(params), params)  # what a step whose metrics carry no loss passes
    updates, _ = optimizer_update(tx, params, tx.init(params), params, jnp.float32(1.0))
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3))
