"""GAN steps: each half's update leaves the other half bitwise alone, and `fit` trains a GAN unchanged."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.pipeline import ArrayDataset
from jaxdl.distributed.parallel import make_parallel
from jaxdl.models.gan import GAN
from jaxdl.training.gan import (
    create_gan_state,
    discriminator_update,
    generator_update,
    make_gan_eval_step,
    make_gan_train_step,
    sample_grid,
)
from jaxdl.training.loop import fit

MODEL = GAN(image_shape=(8, 8, 1), latent_dim=4, width=4)
TX_G, TX_D = optax.adam(1e-2), optax.adam(1e-2)


def _equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(a), jax.device_get(b))))


HIDDEN_MODEL = GAN(image_shape=(8, 8, 1), latent_dim=4, width=4, hidden_units=6)  # a BatchNorm'd dense layer in G, one in D


@functools.cache
def _initial_state(model=MODEL):
    return create_gan_state(model, TX_G, TX_D, jnp.zeros((2, 8, 8, 1)), 0)


def _state(model=MODEL):
    return jax.tree.map(jnp.copy, _initial_state(model))  # the compiled steps donate their input


@functools.cache
def _updates(model):
    d_update = jax.jit(lambda s, real, key: discriminator_update(model, TX_D, s, real, jnp.ones(real.shape[0], bool), key))
    g_update = jax.jit(lambda s, key: generator_update(model, TX_G, s, 3, key))
    return d_update, g_update


@pytest.mark.parametrize("model", [MODEL, HIDDEN_MODEL], ids=["dcgan", "hidden_dense"])
@settings(max_examples=3)  # every example reuses the two compiled updates
@given(seed=st.integers(0, 2 ** 16))
def test_each_update_leaves_the_other_half_bitwise_unchanged(model, seed):
    d_update, g_update = _updates(model)
    state = _state(model)
    real = jax.random.uniform(jax.random.PRNGKey(seed), (3, 8, 8, 1))
    after_d, _ = d_update(state, real, jax.random.PRNGKey(seed + 1))
    assert _equal(after_d.params["generator"], state.params["generator"])
    assert _equal(after_d.opt_state["generator"], state.opt_state["generator"]) and _equal(after_d.batch_stats, state.batch_stats)
    assert not _equal(after_d.params["discriminator"], state.params["discriminator"])
    after_g, _ = g_update(after_d, jax.random.PRNGKey(seed + 2))
    assert _equal(after_g.params["discriminator"], after_d.params["discriminator"])
    assert _equal(after_g.opt_state["discriminator"], after_d.opt_state["discriminator"])
    assert not _equal(after_g.params["generator"], after_d.params["generator"])


def test_fit_trains_a_gan_like_any_model_and_the_run_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    images = np.clip(rng.normal(0.7, 0.1, (64, 8, 8, 1)), 0, 1).astype(np.float32)
    data = ArrayDataset(images, np.zeros(64, np.int32))
    parallel = make_parallel("jit")
    train_step = parallel.compile_train_step(make_gan_train_step(MODEL, TX_G, TX_D))
    eval_step = parallel.compile_eval_step(make_gan_eval_step(MODEL))
    results = [fit(_state(), train_step=train_step, eval_step=eval_step, train_data=data, batch_size=16, num_epochs=2,
                   validation_data=data, workdir=tmp_path / str(i), progress=False) for i in range(2)]
    history = results[0].history
    # No accuracy is logged: the loop's implicit tracker (and the best checkpoint) follow the validation loss.
    assert results[0].summary["best_epoch"] in (1, 2)
    assert len(history) == 2 and all(np.isfinite(row["val_d_loss"]) and np.isfinite(row["train_g_loss"]) for row in history)
    assert _equal(results[0].state.params, results[1].state.params)
    samples = sample_grid(MODEL, results[0].state, 2, 3)
    assert samples.shape == (6, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1


def test_images_the_generator_cannot_make_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        GAN(image_shape=(10, 10, 1)).init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 1)))
    with pytest.raises(ValueError, match="built for images"):
        MODEL.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


def test_the_average_generator_follows_the_ema_recurrence_and_never_feeds_back():
    """With ``ema_decay``, ``generator_ema`` equals the recurrence ``e <- d e + (1 - d) g`` computed in NumPy
    over the generator after each step; the average never feeds back (a step from a state whose average is
    zeroed trains both halves bitwise as from the true one); samples come from the average."""
    decay = 0.7
    real = {"x": jax.random.uniform(jax.random.PRNGKey(3), (3, 8, 8, 1))}
    ema_step = jax.jit(make_gan_train_step(MODEL, TX_G, TX_D, ema_decay=decay))
    state = create_gan_state(MODEL, TX_G, TX_D, jnp.zeros((2, 8, 8, 1)), 0, generator_ema=True)
    expected = jax.device_get(state.params["generator_ema"])
    for _ in range(3):
        state, _ = ema_step(state, real)
        expected = jax.tree.map(lambda e, g: decay * e + (1 - decay) * g, expected, jax.device_get(state.params["generator"]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.params["generator_ema"], expected)
    assert not _equal(state.params["generator_ema"], state.params["generator"])
    zeroed = state.replace(params={**state.params, "generator_ema": jax.tree.map(jnp.zeros_like, state.params["generator_ema"])})
    after, _ = ema_step(jax.tree.map(jnp.copy, state), real)
    after_zeroed, _ = ema_step(zeroed, real)
    for half in ("generator", "discriminator"):
        assert _equal(after.params[half], after_zeroed.params[half])
    as_generator = state.replace(params={"generator": state.params["generator_ema"], "discriminator": state.params["discriminator"]})
    np.testing.assert_array_equal(sample_grid(MODEL, state, 2, 2), sample_grid(MODEL, as_generator, 2, 2))


def test_bad_ema_settings_are_explained():
    with pytest.raises(ValueError, match=r"ema_decay must lie in \(0, 1\)"):
        make_gan_train_step(MODEL, TX_G, TX_D, ema_decay=1.0)
    step = make_gan_train_step(MODEL, TX_G, TX_D, ema_decay=0.9)
    with pytest.raises(ValueError, match="generator_ema=True"):
        jax.eval_shape(step, _initial_state(), {"x": jnp.zeros((2, 8, 8, 1))})


@settings(max_examples=20)
@given(logits=st.lists(st.floats(-30, 30), min_size=1, max_size=8), target=st.floats(0.51, 1.0))
def test_the_smoothed_real_loss_is_binary_cross_entropy_against_the_target(logits, target):
    """``_bce_real(l, t) = -(t log s(l) + (1 - t) log(1 - s(l)))`` (NumPy, float64), stable for large logits."""
    from jaxdl.training.gan import _bce_real

    x = np.asarray(logits, np.float64)
    expected = -(target * -np.logaddexp(0.0, -x) + (1.0 - target) * -np.logaddexp(0.0, x))
    np.testing.assert_allclose(_bce_real(jnp.asarray(x, jnp.float32), target), expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=3)
@given(seed=st.integers(0, 2 ** 16), label_smoothing=st.floats(0.05, 0.4))
def test_one_sided_smoothing_moves_only_the_real_images_target(seed, label_smoothing):
    """From the same state and key, the per-image discriminator loss with real target ``t = 1 - smoothing``
    minus the one with target 1 is ``(1 - t) * real_logit`` (generated images' term unchanged): its sign is the discriminator's
    verdict on each real image."""
    real = jax.random.uniform(jax.random.PRNGKey(seed), (5, 8, 8, 1))
    key, mask = jax.random.PRNGKey(seed + 1), jnp.ones(5, bool)
    _, plain = discriminator_update(MODEL, TX_D, _state(), real, mask, key)
    _, smoothed = discriminator_update(MODEL, TX_D, _state(), real, mask, key, label_smoothing)
    difference = np.asarray(smoothed["d_loss"]) - np.asarray(plain["d_loss"])
    assert np.all(np.abs(difference) > 0)
    np.testing.assert_array_equal(difference > 0, np.asarray(plain["real_correct"]))


def test_bad_label_smoothing_is_explained():
    for bad in (-0.1, 0.5):
        with pytest.raises(ValueError, match=r"one-sided .* must lie in \[0, 0.5\)"):
            make_gan_train_step(MODEL, TX_G, TX_D, label_smoothing=bad)


@settings(max_examples=4)
@given(generator_width=st.integers(2, 9), discriminator_width=st.integers(2, 9))
def test_each_half_can_have_its_own_width(generator_width, discriminator_width):
    """``generator_width`` / ``discriminator_width`` size each half (``width`` the other): the generator's
    first transposed convolution has ``generator_width`` filters, the discriminator's convolutions
    ``discriminator_width`` and twice that."""
    model = GAN(image_shape=(8, 8, 1), latent_dim=4, width=3, generator_width=generator_width,
                discriminator_width=discriminator_width)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert shapes["generator"]["ConvTranspose2D_0"]["kernel"].shape[-1] == generator_width
    assert [shapes["discriminator"][f"Conv2D_{i}"]["kernel"].shape[-1] for i in range(2)] == [discriminator_width, 2 * discriminator_width]
    only_g = jax.eval_shape(GAN(image_shape=(8, 8, 1), latent_dim=4, width=3, generator_width=generator_width).init,
                            jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert only_g["discriminator"]["Conv2D_0"]["kernel"].shape[-1] == 3


@settings(max_examples=2)  # each example initialises and applies three GANs eagerly
@given(hidden_units=st.integers(1, 9), seed=st.integers(0, 2 ** 16))
def test_hidden_dense_layers_sit_between_the_noise_and_the_maps_and_before_the_logit(hidden_units, seed):
    """``hidden_units`` adds one dense layer to each half (InfoGAN's MNIST networks): in the generator from the
    latent to ``hidden_units`` features (BatchNorm, ReLU) before the projection to the smallest maps, in the
    discriminator from the flattened maps to ``hidden_units`` features (leaky ReLU) before the logit; 0 adds none.
    The latent reaches the image only through the hidden layer: with its kernel zeroed every sample is the same."""
    model = GAN(image_shape=(8, 8, 1), latent_dim=4, width=3, hidden_units=hidden_units)
    variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((2, 8, 8, 1)))
    g, d = variables["params"]["generator"], variables["params"]["discriminator"]
    assert g["Dense_0"]["kernel"].shape == (4, hidden_units) and g["Dense_1"]["kernel"].shape == (hidden_units, 2 * 2 * 6)
    assert d["Dense_0"]["kernel"].shape == (2 * 2 * 6, hidden_units) and d["Dense_1"]["kernel"].shape == (hidden_units, 1)
    plain = GAN(image_shape=(8, 8, 1), latent_dim=4, width=3).init(jax.random.PRNGKey(seed), jnp.zeros((2, 8, 8, 1)))
    assert "Dense_1" not in plain["params"]["generator"] and "Dense_1" not in plain["params"]["discriminator"]
    z = jax.random.normal(jax.random.PRNGKey(seed + 1), (5, 4))
    images = model.apply(variables, z, method=GAN.generate)
    assert images.shape == (5, 8, 8, 1) and bool(jnp.all((images >= 0) & (images <= 1)))
    assert float(jnp.max(jnp.abs(images - images[:1]))) > 0
    cut = jax.tree.map(lambda a: a, variables)
    cut["params"]["generator"]["Dense_0"]["kernel"] = jnp.zeros_like(g["Dense_0"]["kernel"])
    same = model.apply(cut, z, method=GAN.generate)
    np.testing.assert_array_equal(np.asarray(same), np.broadcast_to(np.asarray(same[:1]), same.shape))
    logits = model.apply(variables, images, method=GAN.discriminate)
    assert logits.shape == (5,) and bool(jnp.all(jnp.isfinite(logits)))
    with pytest.raises(ValueError, match="hidden_units is the size of a dense hidden layer .* got -1"):
        GAN(image_shape=(8, 8, 1), latent_dim=4, width=3, hidden_units=-1).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))


@settings(max_examples=8)
@given(batch=st.integers(1, 6), padded=st.integers(0, 3), channels=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_minibatch_std_is_the_mean_feature_spread_of_the_real_examples_only(batch, padded, channels, seed):
    """The appended channel equals a float64 NumPy standard deviation over the valid examples (population
    std per feature and position, averaged), is the same at every position of every example, and the
    padded rows (mask False, filled with garbage) change nothing; the other channels pass through."""
    from jaxdl.models.gan import minibatch_std

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch + padded, 3, 2, channels)).astype(np.float32)
    x[batch:] = rng.normal(size=x[batch:].shape) * 1e3
    mask = np.arange(batch + padded) < batch
    out = np.asarray(minibatch_std(jnp.asarray(x), jnp.asarray(mask)))
    expected = np.mean(np.sqrt(np.var(x[:batch].astype(np.float64), axis=0) + 1e-8))
    np.testing.assert_allclose(out[..., -1], expected, rtol=1e-5)
    np.testing.assert_array_equal(out[..., :-1], x)
    copies = np.broadcast_to(x[:1], x.shape)  # a collapsed batch: no spread at all
    assert float(np.asarray(minibatch_std(jnp.asarray(copies)))[0, 0, 0, -1]) < 1e-3


def test_the_discriminator_sees_its_batchs_spread_with_minibatch_std():
    """With ``minibatch_std`` the logit of one image depends on the rest of its batch (and not on masked rows);
    without it, it does not."""
    real = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))
    others = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1))
    for spread in (True, False):
        model = GAN(image_shape=(8, 8, 1), latent_dim=4, width=4, minibatch_std=spread)
        variables = model.init(jax.random.PRNGKey(2), real)
        score = lambda x, mask=None: model.apply(variables, x, mask=mask, method=GAN.discriminate)[0]  # noqa: E731
        mixed = real.at[1:].set(others[1:])
        assert (float(score(real)) != float(score(mixed))) == spread
        mask = jnp.array([True, True, False, False])
        garbage = real.at[2:].set(others[2:])
        assert float(score(real, mask)) == float(score(garbage, mask))


@settings(max_examples=8)
@given(batch=st.integers(1, 7), pack=st.integers(1, 4), channels=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_pack_images_stacks_consecutive_images_on_channels_against_a_numpy_loop(batch, pack, channels, seed):
    """Group g holds images pack*g .. pack*g + pack - 1 (wrapping around past the end) side by side on the
    channel axis, as a NumPy loop builds it; a group is real when any of its members is."""
    from jaxdl.models.gan import pack_images

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 3, 2, channels)).astype(np.float32)
    mask = rng.random(batch) < 0.5
    packed, packed_mask = pack_images(jnp.asarray(x), pack, jnp.asarray(mask))
    groups = -(-batch // pack)
    expected = np.zeros((groups, 3, 2, pack * channels), np.float32)
    expected_mask = np.zeros(groups, bool)
    for g in range(groups):
        for m in range(pack):
            i = (g * pack + m) % batch
            expected[g, :, :, m * channels:(m + 1) * channels] = x[i]
            expected_mask[g] |= mask[i]
    np.testing.assert_array_equal(np.asarray(packed), expected)
    np.testing.assert_array_equal(np.asarray(packed_mask), expected_mask)


@settings(max_examples=4)  # each example builds a discriminator for its batch and pack
@given(batch=st.integers(1, 6), pack=st.integers(1, 3), changed=st.integers(0, 5))
def test_a_packed_discriminator_gives_each_image_its_packs_logit(batch, pack, changed):
    """Image j's logit is its group's (group j // pack; the last group wraps around to the first images), so
    images of one group share a logit, and changing image i moves exactly the logits of the groups holding i."""
    changed %= batch
    model = GAN(image_shape=(8, 8, 1), latent_dim=4, width=4, pack=pack)
    images = jax.random.uniform(jax.random.PRNGKey(batch), (batch, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(1), images)
    assert variables["params"]["discriminator"]["Conv2D_0"]["kernel"].shape[2] == pack
    score = lambda x: np.asarray(model.apply(variables, x, method=GAN.discriminate))  # noqa: E731
    logits = score(images)
    group = np.arange(batch) // pack
    assert logits.shape == (batch,)
    for j in range(batch):
        assert logits[j] == logits[group == group[j]][0]
    groups = -(-batch // pack)
    holding = {changed // pack} | ({groups - 1} if changed < groups * pack - batch else set())
    moved = score(images.at[changed].set(1.0 - images[changed])) != logits
    np.testing.assert_array_equal(moved, np.isin(group, sorted(holding)))


def test_a_packed_gan_step_trains_both_halves_and_refuses_a_pack_under_one():
    model = GAN(image_shape=(8, 8, 1), latent_dim=4, width=4, pack=2)
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1))
    with pytest.raises(ValueError, match="pack is how many images .* got 0"):
        GAN(image_shape=(8, 8, 1), latent_dim=4, width=4, pack=0).init(jax.random.PRNGKey(0), images)
    state = create_gan_state(model, TX_G, TX_D, images[:2], 0)
    new_state, metrics = jax.jit(make_gan_train_step(model, TX_G, TX_D))(state, {"x": images})
    for half in ("generator", "discriminator"):
        assert not _equal(new_state.params[half], state.params[half])
    assert np.isfinite(float(metrics.compute()["loss"]))
