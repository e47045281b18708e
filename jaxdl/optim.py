"""Optimizers and learning-rate schedules from config, all optax.

``make_optimizer(config.optimizer, steps_per_epoch, num_epochs)`` returns an optax chain
``clip_by_global_norm -> weight decay -> optimizer(schedule)`` and the schedule itself (for logging).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import ml_collections
import optax

from jaxdl.tree_util import match_mask

Schedule = Callable[[Any], Any]
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "warmup_cosine")


def _get(config, key, default):
    value = config.get(key, default)
    return default if value is None else value


def make_schedule(config: ml_collections.ConfigDict | dict, steps_per_epoch: int, num_epochs: int) -> Schedule:
    """Learning rate as a function of the step: ``constant``, ``step`` (multiply by ``decay_rate`` every
    ``decay_every_epochs``), ``cosine`` (to ``min_lr_fraction * lr`` at the end) or ``warmup_cosine``
    (linear from 0 over ``warmup_epochs``, then cosine)."""
    lr = float(config["learning_rate"])
    if not lr > 0:
        raise ValueError(f"optimizer.learning_rate must be > 0, got {lr}")
    name = _get(config, "schedule", "constant")
    total = max(int(steps_per_epoch * num_epochs), 1)
    floor = float(_get(config, "min_lr_fraction", 0.0)) * lr
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "step":
        every = float(_get(config, "decay_every_epochs", 1.0))
        return optax.exponential_decay(
            lr, transition_steps=max(int(every * steps_per_epoch), 1),
            decay_rate=float(_get(config, "decay_rate", 0.1)), staircase=True,
        )
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total, alpha=floor / lr)
    if name == "warmup_cosine":
        warmup = int(float(_get(config, "warmup_epochs", 1.0)) * steps_per_epoch)
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=max(warmup, 1),
                                                  decay_steps=max(total, warmup + 1), end_value=floor)
    raise ValueError(f"unknown schedule {name!r}; valid names are {list(SCHEDULES)}")


def make_optimizer(
    config: ml_collections.ConfigDict | dict, steps_per_epoch: int, num_epochs: int
) -> tuple[optax.GradientTransformation, Schedule]:
    """Build ``(optax transformation, schedule)`` from an optimizer config.

    Fields: ``name`` (one of ``OPTIMIZERS``), ``learning_rate`` (> 0), ``momentum`` (momentum/nesterov/
    rmsprop), ``b1``/``b2``/``eps`` (adam, adamw), ``decay`` (rmsprop), ``weight_decay`` (decoupled for
    adamw, added to the gradient for the others) over the parameters matching ``weight_decay_params``
    (regex, default ``"kernel"``), ``clip_norm`` (global-norm clipping when > 0) and schedule fields.
    """
    name = config["name"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {list(OPTIMIZERS)}")
    schedule = make_schedule(config, steps_per_epoch, num_epochs)
    momentum = float(_get(config, "momentum", 0.9))
    b1, b2, eps = float(_get(config, "b1", 0.9)), float(_get(config, "b2", 0.999)), float(_get(config, "eps", 1e-8))
    weight_decay = float(_get(config, "weight_decay", 0.0))
    clip_norm = float(_get(config, "clip_norm", 0.0))
    if weight_decay < 0 or clip_norm < 0:
        raise ValueError(f"weight_decay and clip_norm must be >= 0, got {weight_decay} and {clip_norm}")
    decay_pattern = _get(config, "weight_decay_params", "kernel")

    def decay_mask(params):
        return match_mask(params, decay_pattern)

    chain = []
    if clip_norm > 0:
        chain.append(optax.clip_by_global_norm(clip_norm))
    if weight_decay > 0 and name != "adamw":
        chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    if name == "sgd":
        chain.append(optax.sgd(schedule))
    elif name == "momentum":
        chain.append(optax.sgd(schedule, momentum=momentum))
    elif name == "nesterov":
        chain.append(optax.sgd(schedule, momentum=momentum, nesterov=True))
    elif name == "adam":
        chain.append(optax.adam(schedule, b1=b1, b2=b2, eps=eps))
    elif name == "adamw":
        chain.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                 mask=decay_mask if weight_decay > 0 else None))
    elif name == "rmsprop":
        chain.append(optax.rmsprop(schedule, decay=float(_get(config, "decay", 0.9)), eps=eps,
                                   momentum=float(_get(config, "momentum", 0.0)) or None))
    return optax.chain(*chain), schedule


def learning_rate_at(schedule: Schedule, step: int) -> float:
    """The schedule's learning rate at ``step`` as a Python float (for logs)."""
    return float(jax.device_get(schedule(step)))
