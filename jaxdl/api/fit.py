"""`fit(model, data, ...)`: train your own Linen or NNX model on your own arrays, with the same step, loop,
checkpoints and strategies as ``jaxdl train``."""

from __future__ import annotations

import pathlib
import warnings
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax

from jaxdl.api.data import as_dataset, registered_splits, split_validation
from jaxdl.api.objective import CROSS_ENTROPIES, Objective, make_objective
from jaxdl.api.run import Run, keras_history
from jaxdl.api.transfer import frozen_optimizer, starting_variables
from jaxdl.config import default_config
from jaxdl.data.pipeline import map_inputs, num_train_batches
from jaxdl.distributed.parallel import make_parallel
from jaxdl.models.adapter import as_model, with_own_collections
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.hooks.profile import ProfileSteps, parse_steps
from jaxdl.training.loop import fit as fit_loop
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import abstract_variables, create_train_state, initialise_missing, input_spec_of, train_state_from
from jaxdl.training.step import make_eval_step, make_train_step
from jaxdl.training.step_norms import LogWindows
from jaxdl.transfer.backbone import frozen_model
from jaxdl.transfer.freeze import Freeze
from jaxdl.util.counts import require_counts

PROBE_EXAMPLES = 256  # examples the untrained model is run on before training, for the output checks


def fit(model: Any, data: Any, *, loss: str | Callable, epochs: int, batch_size: int = 32,
        optimizer: str | optax.GradientTransformation = "adam", learning_rate: float = 1e-3,
        validation_data: Any = None, validation_split: float = 0.0, metrics: Sequence[str | Callable] | None = None,
        from_logits: bool = True, seed: int = 0, workdir: str | pathlib.Path | None = None, strategy: str = "jit",
        early_stopping: EarlyStopping | None = None, hooks: Sequence[Any] = (), progress: bool = True,
        initial_variables: Any = None, freeze: Freeze | None = None, profile: str | None = None,
        step_norms: bool = True) -> Run:
    """Train ``model`` on ``data`` and return the `Run` (its ``state``, Keras-style ``history``, ``predict``).

    ``model``: a Flax Linen module, whatever its training flag (``train``, ``training``, ``deterministic``, ...
    or none), or an NNX module. ``data``: ``(x, y)`` arrays (``x`` may be a dict of arrays), an `ArrayDataset`,
    an iterable of ``(x, y)`` batches, or a registered data set by name (``"digits"``: its train part, validated
    on its validation part) or as `DatasetSplits` (``jaxdl.data.load_dataset(...)``). ``loss``: a name
    (``"binary_cross_entropy"``, ``"softmax_cross_entropy"``, ``"mse"``, Keras spellings too) or ``loss(outputs, labels) -> [batch]``; ``from_logits=False`` for a model
    ending in a sigmoid or softmax. ``metrics``: names the loss's task computes (``"accuracy"``, ...) or
    functions ``(outputs, labels) -> [batch]``; None keeps all the task computes. ``optimizer``: an optax
    optimizer or a name (``"adam"``, ``"sgd"``, ...) at ``learning_rate``. Validation comes from
    ``validation_data`` or the last ``validation_split`` of ``data``. With a ``workdir`` the run is checkpointed,
    resumable and locked as ``jaxdl train``'s is. ``strategy``: ``"jit"``, ``"pmap"`` or ``"mesh"``.

    Transfer: ``initial_variables`` starts from given weights instead of random ones (a `Backbone` from
    `jaxdl.backbone`, an earlier `Run`, or a dict of variables; see `jaxdl.api.transfer.starting_variables`)
    with a new optimizer state; ``freeze`` (a `Freeze`) trains only part of a ``backbone`` submodule, the rest
    at ``backbone_lr_scale`` times ``learning_rate``, frozen parameters bitwise unchanged. ``profile="START:STOP"``
    writes a `jax.profiler` trace of those optimizer steps to ``workdir/profile`` (``./profile`` without one).
    The gradient, update and parameter norms are measured at each log line's step; ``step_norms=False`` leaves
    them out of the logs.
    """
    require_counts({"epochs": epochs, "batch_size": batch_size})
    splits = registered_splits(data)
    train = as_dataset(splits.train if splits else data, "data")
    if validation_data is None and splits is not None and not validation_split:
        validation_data = splits.validation
    if validation_data is not None:
        if validation_split:
            raise ValueError("pass validation_data or validation_split, not both")
        validation = as_dataset(validation_data, "validation_data")
    else:
        train, validation = split_validation(train, validation_split)
    sample = map_inputs(lambda a: a[:1], train.x)
    module = with_own_collections(as_model(model), sample)
    steps_per_epoch = max(num_train_batches(len(train), batch_size), 1)
    schedule = None

    def make_tx(rate: float) -> optax.GradientTransformation:
        nonlocal schedule
        if not isinstance(optimizer, str):  # a slower group scales the given optimizer's updates
            return optimizer if rate == learning_rate else optax.chain(optimizer, optax.scale(rate / learning_rate))
        tx, rate_schedule = make_optimizer({"name": optimizer, "learning_rate": rate}, steps_per_epoch, epochs)
        schedule = rate_schedule if rate == learning_rate else schedule  # the head's rate is the one logged
        return tx

    if freeze is not None:
        key = jax.random.PRNGKey(0)
        params = jax.eval_shape(lambda: module.init({"params": key, "dropout": key}, sample, train=False))["params"]
        module = frozen_model(module, freeze, params)
        if freeze.mode == "lora":  # the adapters are parameters too: they get the "adapter" label
            params = jax.eval_shape(lambda: module.init({"params": key, "dropout": key}, sample, train=False))["params"]
        tx = frozen_optimizer(make_tx, learning_rate, freeze, params)
    else:
        tx = make_tx(learning_rate)
    restored: dict[str, Any] = {}
    if initial_variables is None:
        state = create_train_state(module, tx, sample, seed)
    else:  # only what the given variables leave out is initialised
        variables, restored = starting_variables(abstract_variables(module, sample), initial_variables)
        state = train_state_from(initialise_missing(module, sample, seed, variables), tx, seed)
    probe = map_inputs(lambda a: a[:PROBE_EXAMPLES], train.x)
    outputs = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(state.variables(), probe))
    objective = make_objective(loss, metrics, from_logits, outputs.shape[-1] if outputs.ndim > 1 else None)
    _check_objective(objective, outputs, train.y[:PROBE_EXAMPLES], train, validation)
    if profile:
        hooks = [*hooks, ProfileSteps(pathlib.Path(workdir or ".") / "profile", *parse_steps(profile))]
    parallel = make_parallel(strategy)
    log_every = default_config().train.log_every  # the log lines' interval, and the steps measuring the norms
    train_step = make_train_step(module, objective.loss, objective.metrics, tx, axis_name=parallel.axis_name,
                                 norms=step_norms, norms_at=LogWindows(log_every, steps_per_epoch))
    eval_step = make_eval_step(module, objective.loss, objective.metrics, axis_name=parallel.axis_name)
    result = fit_loop(state, train_step=parallel.compile_train_step(train_step),
                      eval_step=parallel.compile_eval_step(eval_step), train_data=train, batch_size=batch_size,
                      num_epochs=epochs, seed=seed, validation_data=validation, workdir=workdir, progress=progress,
                      schedule=schedule, input_spec=input_spec_of(sample), parallel=parallel, hooks=hooks,
                      early_stopping=early_stopping, log_every=log_every,
                      eval_batch_size=max(batch_size, 256))
    summary = dict(result.summary, initial_variables=restored) if restored else result.summary
    return Run(module, result.state, keras_history(result.history, objective.shown), summary, objective,
               None if workdir is None else str(workdir), input_spec_of(sample))


def _check_objective(objective: Objective, outputs: np.ndarray, labels: np.ndarray, *datasets: Any) -> None:
    """Refuse labels outside the loss's classes and metric names it does not compute; warn when the untrained
    model's outputs look like probabilities but the loss takes logits."""
    if objective.task is not None:
        for what, dataset in zip(("data", "validation_data"), datasets):
            if dataset is not None:
                objective.task.check_labels(dataset.y, what)
    if objective.from_logits and objective.name in CROSS_ENTROPIES and outputs.size >= 8:
        binary = objective.name == "binary_cross_entropy"
        probabilities = (np.all((outputs > 0) & (outputs < 1)) if binary else
                         np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-4))
        if probabilities:
            warnings.warn(f"the model's outputs look like probabilities ({'all in (0, 1)' if binary else 'rows summing to 1'}) "
                          f"but {objective.name} takes logits: end the model without its "
                          f"{'sigmoid' if binary else 'softmax'}, or pass from_logits=False", stacklevel=3)
    if objective.shown is not None:
        import jax.numpy as jnp

        per_example = objective.loss(jnp.asarray(outputs), jnp.asarray(labels))
        computed = objective.metrics(jnp.asarray(outputs), jnp.asarray(labels), per_example, None).compute()
        unknown = sorted(set(objective.shown) - set(computed))
        if unknown:
            raise ValueError(f"metrics {unknown} are not computed for this loss; available: "
                             f"{sorted(k for k in computed if k != 'count')}, or pass functions (outputs, labels) -> [batch]")
