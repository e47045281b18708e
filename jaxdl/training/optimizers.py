"""Optimizers and learning-rate schedules from config, all optax.

``make_optimizer(config.optimizer, steps_per_epoch, num_epochs)`` returns an optax chain
``clip_by_global_norm -> weight decay -> optimizer(schedule)`` and the schedule itself (for logging).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdl.util.tree import match_mask

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


TUNABLE = ("learning_rate", "weight_decay", "momentum", "b1", "b2")


def make_optimizer(
    config: ml_collections.ConfigDict | dict, steps_per_epoch: int, num_epochs: int, tunable: bool = False
) -> tuple[optax.GradientTransformation, Schedule]:
    """Build ``(optax transformation, schedule)`` from an optimizer config.

    Fields: ``name`` (one of ``OPTIMIZERS``), ``learning_rate`` (> 0), ``momentum`` (momentum/nesterov/
    rmsprop), ``b1``/``b2``/``eps`` (adam, adamw), ``decay`` (rmsprop), ``weight_decay`` (decoupled for
    adamw, added to the gradient for the others) over the parameters matching ``weight_decay_params``
    (regex, default ``"kernel"``), ``clip_norm`` (global-norm clipping when > 0) and schedule fields.
    ``plateau_patience`` > 0 appends ``optax.contrib.reduce_on_plateau``: the updates are scaled by
    ``plateau_factor`` whenever the epoch's mean training loss (``accumulation_size`` = the steps of an epoch; the
    step passes each batch's loss as ``value``) has not improved by ``plateau_rtol`` for that many epochs, after
    ``plateau_cooldown`` epochs and down to ``plateau_min_scale``: reduce-on-plateau on top of any schedule.

    With ``tunable`` the continuous hyperparameters in `TUNABLE` are not baked into the program but kept in
    the optimizer state (``optax.inject_hyperparams``: ``opt_state.hyperparams``), so states that differ only
    in them share one compiled step, and `jax.vmap` trains many such trials at once. The schedule's shape
    is shared and scaled by each state's peak ``learning_rate``.
    """
    name = config["name"]
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {list(OPTIMIZERS)}")
    schedule = make_schedule(config, steps_per_epoch, num_epochs)
    learning_rate = float(config["learning_rate"])
    values = {"learning_rate": learning_rate, "weight_decay": float(_get(config, "weight_decay", 0.0)),
              "momentum": float(_get(config, "momentum", 0.9)), "b1": float(_get(config, "b1", 0.9)),
              "b2": float(_get(config, "b2", 0.999))}
    clip_norm = float(_get(config, "clip_norm", 0.0))
    if values["weight_decay"] < 0 or clip_norm < 0:
        raise ValueError(f"weight_decay and clip_norm must be >= 0, got {values['weight_decay']} and {clip_norm}")
    eps = float(_get(config, "eps", 1e-8))
    rmsprop_momentum = float(_get(config, "momentum", 0.0))
    decay_pattern = _get(config, "weight_decay_params", "kernel")

    def decay_mask(params):
        return match_mask(params, decay_pattern)

    def build(learning_rate, weight_decay, momentum, b1, b2, lr_schedule) -> optax.GradientTransformation:
        # A tunable chain always holds the weight-decay transform, so every trial's state has one structure.
        decays = tunable or weight_decay > 0
        chain = []
        if clip_norm > 0:
            chain.append(optax.clip_by_global_norm(clip_norm))
        if decays and name != "adamw":
            chain.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
        if name == "sgd":
            chain.append(optax.sgd(lr_schedule))
        elif name == "momentum":
            chain.append(optax.sgd(lr_schedule, momentum=momentum))
        elif name == "nesterov":
            chain.append(optax.sgd(lr_schedule, momentum=momentum, nesterov=True))
        elif name == "adam":
            chain.append(optax.adam(lr_schedule, b1=b1, b2=b2, eps=eps))
        elif name == "adamw":
            chain.append(optax.adamw(lr_schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                     mask=decay_mask if decays else None))
        elif name == "rmsprop":
            chain.append(optax.rmsprop(lr_schedule, decay=float(_get(config, "decay", 0.9)), eps=eps,
                                       momentum=(momentum if tunable else rmsprop_momentum) or None))
        patience = int(_get(config, "plateau_patience", 0))
        if patience > 0:
            chain.append(optax.contrib.reduce_on_plateau(
                factor=float(_get(config, "plateau_factor", 0.1)), patience=patience,
                rtol=float(_get(config, "plateau_rtol", 1e-4)), cooldown=int(_get(config, "plateau_cooldown", 0)),
                accumulation_size=steps_per_epoch, min_scale=float(_get(config, "plateau_min_scale", 0.0))))
        return optax.chain(*chain)

    if int(_get(config, "plateau_patience", 0)) < 0:
        raise ValueError(f"plateau_patience must be >= 0 (0: off), got {_get(config, 'plateau_patience', 0)}")
    if tunable and int(_get(config, "plateau_patience", 0)) > 0:
        raise ValueError("vmapped trials cannot reduce their rates on plateau; search them one at a time "
                         "(search.schedule='sequential') or set optimizer.plateau_patience=0")
    if not tunable:
        return build(**values, lr_schedule=schedule), schedule
    if name == "rmsprop" and not rmsprop_momentum:
        values["momentum"] = 0.0
    unit = make_schedule({**dict(config), "learning_rate": 1.0}, steps_per_epoch, num_epochs)

    def tunable_build(learning_rate, weight_decay, momentum, b1, b2):
        # Every schedule is linear in its peak rate: a trial's schedule is the shared shape times its rate.
        return build(learning_rate, weight_decay, momentum, b1, b2, lambda count: learning_rate * unit(count))

    return optax.inject_hyperparams(tunable_build)(**values), schedule


def set_hyperparams(opt_state: Any, **values: float) -> Any:
    """A copy of a tunable optimizer state (``make_optimizer(..., tunable=True)``) with hyperparameters replaced."""
    if not hasattr(opt_state, "hyperparams"):
        raise ValueError("this optimizer state holds no hyperparameters: build it with make_optimizer(..., tunable=True)")
    unknown = set(values) - set(opt_state.hyperparams)
    if unknown:
        raise ValueError(f"unknown tunable hyperparameters {sorted(unknown)}; valid ones are {sorted(opt_state.hyperparams)}")
    hyperparams = dict(opt_state.hyperparams)
    for key, value in values.items():
        hyperparams[key] = jnp.asarray(value, jnp.asarray(hyperparams[key]).dtype)
    return opt_state._replace(hyperparams=hyperparams)


def learning_rate_at(schedule: Schedule, step: int) -> float:
    """The schedule's learning rate at ``step`` as a Python float (for logs)."""
    return float(jax.device_get(schedule(step)))


def optimizer_update(tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any,
                     value: Any = None) -> tuple[Any, Any]:
    """``tx.update(grads, opt_state, params)`` traced with JAX's standard dtype promotion: optax's bias
    corrections compute ``decay ** count`` from an integer step count, which strict promotion (what jaxdl's
    own code is tested under) refuses. ``value`` (the batch's mean loss) reaches transformations that take
    extra arguments (reduce-on-plateau); the others never see it."""
    if value is None and _reduces_on_plateau(opt_state):
        raise ValueError("optimizer.plateau_patience > 0 reduces the rate when the training loss stops improving, "
                         "so the step needs each batch's loss: the task's metrics must have loss_sum and count "
                         "fields (as jaxdl's Metrics do); set optimizer.plateau_patience=0 otherwise")
    with jax.numpy_dtype_promotion("standard"):
        if value is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
            return tx.update(grads, opt_state, params, value=value)
        return tx.update(grads, opt_state, params)


def _reduces_on_plateau(opt_state: Any) -> bool:
    is_plateau = lambda node: isinstance(node, optax.contrib.ReduceLROnPlateauState)  # noqa: E731
    return any(is_plateau(node) for node in jax.tree.leaves(opt_state, is_leaf=is_plateau))
