"""Adversarial training as pure steps: two networks, two optimizers, one `TrainState`.

A GAN's ``state.params`` and ``state.opt_state`` are ``{"generator": ..., "discriminator": ...}``; each half
has its own optax optimizer, so an update of one never touches the other's parameters or moments. One
`make_gan_train_step` step is a discriminator update (real images vs generated ones, the generator held
fixed) followed by a generator update against the updated discriminator with the non-saturating loss
``-log D(G(z))``. The step has the ``(state, batch) -> (state, metrics)`` shape of every jaxdl step, so
`fit` trains, logs and checkpoints a GAN as it does a classifier.

With ``ema_decay`` the state also holds ``params["generator_ema"]``, an exponential moving average of the
generator's parameters updated after every generator step, and samples (`sample_grid`, the sheets, the
judge) come from it: the live generator circles around an equilibrium of the two-player game and the
average sits nearer its centre (Yazici et al., 2019, "The Unusual Effectiveness of Averaging in GAN Training").
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.metrics import Sums, as_mask
from jaxdl.models.gan import GAN
from jaxdl.training.optimizers import optimizer_update
from jaxdl.training.state import TrainState, init_variables
from jaxdl.training.weight_average import copy_params

HALVES = ("generator", "discriminator")
EMA = "generator_ema"


@flax.struct.dataclass
class GANMetrics(Sums):
    """Sums over images: both losses, and how often the discriminator judged real and generated images right."""

    d_loss_sum: jax.Array
    g_loss_sum: jax.Array
    real_correct: jax.Array
    fake_correct: jax.Array
    count: jax.Array

    def compute(self) -> dict[str, float]:
        """Mean ``d_loss``, ``g_loss`` (``loss`` is their sum), and the discriminator's accuracies."""
        host = jax.device_get(self)
        n = max(int(host.count), 1)
        d, g = float(host.d_loss_sum) / n, float(host.g_loss_sum) / n
        return {"loss": d + g, "d_loss": d, "g_loss": g, "d_real_accuracy": int(host.real_correct) / n,
                "d_fake_accuracy": int(host.fake_correct) / n, "count": int(host.count)}


def create_gan_state(model: GAN, tx_generator: optax.GradientTransformation, tx_discriminator: optax.GradientTransformation,
                     sample_x: jax.Array, seed: int, generator_ema: bool = False) -> TrainState:
    """Both halves initialised from ``seed`` for images like ``sample_x: [batch, h, w, c]``, each with its own
    optimizer state; with ``generator_ema`` also the average generator (``params["generator_ema"]``, starting
    as a copy of the generator), for a step made with ``ema_decay``."""
    params_key, dropout_key, rng = jax.random.split(jax.random.PRNGKey(seed), 3)
    variables = init_variables(model, {"params": params_key, "dropout": dropout_key}, sample_x)
    params = dict(variables["params"])
    if generator_ema:  # a copy, not the same buffers: a donated state must not hold one buffer twice
        params[EMA] = copy_params(params["generator"])
    opt_state = {"generator": tx_generator.init(params["generator"]),
                 "discriminator": tx_discriminator.init(params["discriminator"])}
    return TrainState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}), opt_state, rng)


def _bce_real(logits: jax.Array, target: float = 1.0) -> jax.Array:
    # -log sigmoid(logits) for target 1; a smoothed target t mixes in -(1 - t) log(1 - sigmoid(logits))
    loss = jax.nn.softplus(-logits)
    return loss if target == 1.0 else target * loss + (1.0 - target) * jax.nn.softplus(logits)


def _bce_fake(logits: jax.Array) -> jax.Array:
    return jax.nn.softplus(logits)  # -log(1 - sigmoid(logits))


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask, dtype=values.dtype), 1.0)


def _model_params(params: dict[str, Any]) -> dict[str, Any]:
    return {half: params[half] for half in HALVES}


def _generate(model: GAN, state: TrainState, params: Any, z: jax.Array, train: bool) -> tuple[jax.Array, Any]:
    variables = {"params": _model_params(params), "batch_stats": state.batch_stats}
    if not train:
        return model.apply(variables, z, method=GAN.generate), state.batch_stats
    images, updates = model.apply(variables, z, train=True, method=GAN.generate, mutable=["batch_stats"])
    return images, updates["batch_stats"]


def _discriminate(model: GAN, params: Any, x: jax.Array, key: jax.Array | None, mask: jax.Array | None = None) -> jax.Array:
    rngs = {"dropout": key} if key is not None else {}
    return model.apply({"params": _model_params(params)}, x, train=key is not None, mask=mask, method=GAN.discriminate,
                       rngs=rngs)


def discriminator_update(model: GAN, tx: optax.GradientTransformation, state: TrainState, real: jax.Array,
                         mask: jax.Array, key: jax.Array, label_smoothing: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One discriminator step on ``real`` images and as many generated ones; the generator's parameters,
    optimizer state and BatchNorm statistics are left exactly as they were. ``label_smoothing`` is one-sided
    (Salimans et al., 2016): real images are scored against ``1 - label_smoothing``, generated ones against 0,
    so the discriminator is not rewarded for ever more extreme logits on real images."""
    z_key, real_key, fake_key = jax.random.split(key, 3)
    z = jax.random.normal(z_key, (real.shape[0], model.latent_dim), real.dtype)
    fake, _ = _generate(model, state, state.params, z, train=True)  # statistics kept only in the generator update
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        params = {**state.params, "discriminator": d_params}
        real_logits = _discriminate(model, params, real, real_key, mask)
        fake_logits = _discriminate(model, params, fake, fake_key, mask)
        per_image = _bce_real(real_logits, 1.0 - label_smoothing) + _bce_fake(fake_logits)
        return _masked_mean(per_image, mask), (per_image, real_logits, fake_logits)

    (_, (per_image, real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["discriminator"])
    updates, d_opt = optimizer_update(tx, grads, state.opt_state["discriminator"], state.params["discriminator"])
    params = {**state.params, "discriminator": optax.apply_updates(state.params["discriminator"], updates)}
    state = state.replace(params=params, opt_state={**state.opt_state, "discriminator": d_opt})
    return state, {"d_loss": per_image, "real_correct": real_logits > 0, "fake_correct": fake_logits < 0}


def generator_update(model: GAN, tx: optax.GradientTransformation, state: TrainState, batch_size: int,
                     key: jax.Array) -> tuple[TrainState, jax.Array]:
    """One generator step with the non-saturating loss ``-log D(G(z))`` against the current discriminator;
    the discriminator's parameters and optimizer state are left exactly as they were."""
    z_key, d_key = jax.random.split(key)
    z = jax.random.normal(z_key, (batch_size, model.latent_dim))

    def loss_fn(g_params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        params = {**state.params, "generator": g_params}
        fake, batch_stats = _generate(model, state, params, z, train=True)
        per_image = _bce_real(_discriminate(model, params, fake, d_key))
        return jnp.mean(per_image), (per_image, batch_stats)

    (_, (per_image, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["generator"])
    updates, g_opt = optimizer_update(tx, grads, state.opt_state["generator"], state.params["generator"])
    params = {**state.params, "generator": optax.apply_updates(state.params["generator"], updates)}
    return state.replace(params=params, batch_stats=batch_stats, opt_state={**state.opt_state, "generator": g_opt}), per_image


def update_generator_ema(state: TrainState, decay: float) -> TrainState:
    """``generator_ema <- decay * generator_ema + (1 - decay) * generator``; everything else unchanged."""
    average = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.params[EMA], state.params["generator"])
    return state.replace(params={**state.params, EMA: average})


def make_gan_train_step(model: GAN, tx_generator: optax.GradientTransformation,
                        tx_discriminator: optax.GradientTransformation,
                        ema_decay: float | None = None,
                        label_smoothing: float = 0.0) -> Callable[[TrainState, dict], tuple[TrainState, GANMetrics]]:
    """``train_step(state, batch) -> (state, GANMetrics)``: a discriminator update on ``batch["x"]`` (real images
    in ``[0, 1]``; labels, if any, are ignored; one-sided ``label_smoothing``, see
    `discriminator_update`), then a generator update, then (with ``ema_decay``, for a state made with
    ``generator_ema=True``) the average generator's update. Keys derive from ``fold_in(state.rng, state.step)``,
    so a run is reproducible bit for bit."""
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in (0, 1) (e.g. 0.999), got {ema_decay}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing of a GAN is one-sided (real images are scored against 1 - label_smoothing, "
                         f"generated ones against 0): it must lie in [0, 0.5), e.g. 0.1; got {label_smoothing}")

    def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, GANMetrics]:
        real = batch["x"]
        mask = as_mask(batch.get("mask"), real.shape[0])
        d_key, g_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
        state, judged = discriminator_update(model, tx_discriminator, state, real, mask, d_key, label_smoothing)
        state, g_loss = generator_update(model, tx_generator, state, real.shape[0], g_key)
        if ema_decay is not None:
            if EMA not in state.params:
                raise ValueError(f"a step with ema_decay needs a state made by create_gan_state(..., generator_ema=True); "
                                 f"the state's params hold {sorted(state.params)}")
            state = update_generator_ema(state, ema_decay)
        metrics = GANMetrics(
            d_loss_sum=jnp.sum(jnp.where(mask, judged["d_loss"], 0.0)), g_loss_sum=jnp.sum(jnp.where(mask, g_loss, 0.0)),
            real_correct=jnp.sum(judged["real_correct"] & mask).astype(jnp.int32),
            fake_correct=jnp.sum(judged["fake_correct"] & mask).astype(jnp.int32), count=jnp.sum(mask).astype(jnp.int32))
        return state.replace(step=state.step + 1), metrics

    return train_step


def make_gan_eval_step(model: GAN) -> Callable[[TrainState, dict], GANMetrics]:
    """``eval_step(state, batch) -> GANMetrics`` in inference mode: the discriminator on the batch's real
    images and on as many samples from a fixed noise stream (the same for every evaluation)."""

    def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> GANMetrics:
        real = batch["x"]
        mask = as_mask(batch.get("mask"), real.shape[0])
        z = jax.random.normal(jax.random.PRNGKey(0), (real.shape[0], model.latent_dim), real.dtype)
        fake, _ = _generate(model, state, state.params, z, train=False)
        real_logits = _discriminate(model, state.params, real, None, mask)
        fake_logits = _discriminate(model, state.params, fake, None, mask)
        return GANMetrics(
            d_loss_sum=jnp.sum(jnp.where(mask, _bce_real(real_logits) + _bce_fake(fake_logits), 0.0)),
            g_loss_sum=jnp.sum(jnp.where(mask, _bce_real(fake_logits), 0.0)),
            real_correct=jnp.sum((real_logits > 0) & mask).astype(jnp.int32),
            fake_correct=jnp.sum((fake_logits < 0) & mask).astype(jnp.int32), count=jnp.sum(mask).astype(jnp.int32))

    return eval_step


def sample_grid(model: GAN, state: TrainState, rows: int = 8, columns: int = 8, seed: int = 0) -> np.ndarray:
    """Images from a fixed latent grid (the same ``seed`` every epoch, so a run's sample sheets are
    comparable): ``[rows * columns, h, w, c]`` in ``[0, 1]``, from the average generator when the state has one."""
    z = jax.random.normal(jax.random.PRNGKey(seed), (rows * columns, model.latent_dim))
    return np.asarray(_sample(model, state, z))


@functools.partial(jax.jit, static_argnums=0)  # one compile per model and grid size, not one per epoch
def _sample(model: GAN, state: TrainState, z: jax.Array) -> jax.Array:
    params = {**state.params, "generator": state.params[EMA]} if EMA in state.params else state.params
    return _generate(model, state, params, z, train=False)[0]
