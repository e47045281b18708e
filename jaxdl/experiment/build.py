"""``build_experiment(config)``: the one place where a config meets the library.

The config names a data set, a model, a loss (whose `jaxdl.tasks` task supplies metrics, checks, state and
steps), an optimizer and a device strategy; this module builds each and compiles the steps. It never asks
which task it is building: everything that differs between tasks is a method of the task.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxdl.config import as_tuples, model_arguments, validate_config
from jaxdl.data.augment import make_augmentation
from jaxdl.data.datasets import DatasetSplits, load_dataset
from jaxdl.data.pipeline import map_inputs, num_train_batches
from jaxdl.data.test_time import TestTimeAugmentation, make_test_time_augmentation
from jaxdl.distributed.parallel import Parallel, make_parallel
from jaxdl.distributed.runtime import configure_compilation_cache
from jaxdl.distributed.sharding import check_sharding_rules
from jaxdl.experiment.transfer_setup import transfer_setup
from jaxdl.models import create_model, model_constructor, model_fields
from jaxdl.nn import lowering
from jaxdl.nn.embedding import check_token_ids
from jaxdl.tasks import Task, get_task
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import InputSpec, TrainState, input_spec_of
from jaxdl.training.step_norms import LogWindows
from jaxdl.training.weight_average import check_decay


@dataclasses.dataclass
class Experiment:
    """The pieces an experiment config builds: data, task, model, optimizer, initial state and compiled steps."""

    config: ml_collections.ConfigDict
    data: DatasetSplits
    task: Task
    model: Any
    schedule: Any
    state: TrainState
    train_step: Any
    eval_step: Any
    input_spec: InputSpec | dict[str, InputSpec]
    parallel: Parallel
    pure_train_step: Any  # the uncompiled steps, for jax.vmap over trials (jaxdl.tune)
    pure_eval_step: Any
    tx: Any  # the optax transformation the steps apply
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. what a transfer restored and froze
    test_time: TestTimeAugmentation | None = None  # views averaged in the final evaluation (data.test_time_augment)
    test_time_eval_step: Any = None  # the compiled eval step over those views


def _check_token_data(data: DatasetSplits, vocab_size: int | None) -> None:
    """Token ids are checked once on the host: inside the compiled step an out-of-range id would silently
    read a clamped embedding row."""
    if vocab_size is None:
        return
    for split in ("train", "validation", "test"):
        inputs = getattr(data, split).x
        for key, ids in (inputs.items() if isinstance(inputs, dict) else [("", inputs)]):
            if np.issubdtype(ids.dtype, np.integer):
                check_token_ids(ids, vocab_size, f"{split} data x{f'[{key!r}]' if key else ''}")


def _test_time_augmentation(config: ml_collections.ConfigDict, task: Task, sample: Any) -> TestTimeAugmentation | None:
    """``data.test_time_augment``'s views averaged as the task combines them; an error where the task's outputs
    are not one prediction per input, or the model's inputs (after a transfer's feature extraction, say) are
    not images."""
    specs = tuple(config.data.test_time_augment)
    if not specs:
        return None
    if task.test_time_combine is None:
        raise ValueError(f"data.test_time_augment averages one prediction per image; loss {task.name!r} gives none "
                         f"(a mask or a box grid would have to be mapped back through each view): set data.test_time_augment=()")
    if not isinstance(sample, jax.Array | np.ndarray) or np.ndim(sample) != 4:
        shape = np.shape(sample) if isinstance(sample, jax.Array | np.ndarray) else type(sample).__name__
        raise ValueError(f"data.test_time_augment={specs} needs image inputs [batch, height, width, channels]; "
                         f"this data set's inputs are {shape}")
    return make_test_time_augmentation(specs, task.test_time_combine)


def _model_kwargs(config: ml_collections.ConfigDict, task: Task, data: DatasetSplits, sample: Any) -> dict[str, Any]:
    """The model's hyperparameters: the config's, then what the data set and the task imply for fields the
    model has and the config leaves unset."""
    kwargs = model_arguments(config)
    accepted = model_fields(model_constructor(config.model.name))
    for key, value in {**data.model_defaults, **task.model_defaults(sample)}.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    return kwargs


def build_experiment(config: ml_collections.ConfigDict, data: DatasetSplits | None = None,
                     tunable: bool = False) -> Experiment:
    """Validate ``config`` and build its data, task, model, optimizer, initial state and compiled steps (with
    ``tunable``, an optimizer whose continuous hyperparameters live in its state: see `make_optimizer`)."""
    validate_config(config)
    if config.train.lowering not in lowering.MODES:
        raise ValueError(f"train.lowering must be one of {list(lowering.MODES)}, got {config.train.lowering!r}")
    lowering.configure(mode=config.train.lowering)  # read by every convolution when the steps are traced
    data = data if data is not None else load_dataset(config.data)
    task = get_task(config.loss, data.num_classes)
    train = config.train
    parallel = make_parallel(train.strategy, as_tuples(train.mesh_shape), as_tuples(train.sharding_rules))
    task.check_config(config, parallel.strategy)
    for split in ("train", "validation", "test"):
        if getattr(data, split) is not None:
            task.check_labels(getattr(data, split).y, f"{split}")
    sample = map_inputs(lambda a: a[:1], data.train.x)
    test_time = _test_time_augmentation(config, task, sample)  # before any model is built: refuse early
    steps_per_epoch = max(num_train_batches(len(data.train), config.data.batch_size), 1)
    model_kwargs = _model_kwargs(config, task, data, sample)
    ema_decay = check_decay(train.ema_decay)
    notes: dict[str, Any] = {}
    if config.transfer.pretrained or config.transfer.workdir or config.model.name == "transfer":
        if tunable:
            raise ValueError("hyperparameter search with vmapped trials does not support transfer models; "
                             "search them one trial at a time or without config.transfer")
        model, tx, schedule, state, notes, data = transfer_setup(config, data, model_kwargs, sample, steps_per_epoch,
                                                                 ema_decay > 0)
        sample = map_inputs(lambda a: a[:1], data.train.x)
    else:
        model = create_model(config.model.name, **model_kwargs)
        tx, schedule = make_optimizer(config.optimizer, steps_per_epoch, train.num_epochs, tunable)
        state = task.create_state(model, tx, sample, config, ema_decay > 0)
    _check_token_data(data, getattr(model, "vocab_size", getattr(getattr(model, "backbone", None), "vocab_size", None)))
    task.check_outputs(model, state, sample)
    if parallel.sharding_rules:
        parallel = dataclasses.replace(parallel, sharding_rules=check_sharding_rules(parallel.sharding_rules, state.params,
                                                                                     parallel.mesh))
    parallel.check_batch_size(config.data.batch_size, "data.batch_size")
    configure_compilation_cache(train.compilation_cache_dir)
    steps = functools.partial(task.make_steps, model, tx, config, axis_name=parallel.axis_name, ema_decay=ema_decay,
                              augment=make_augmentation(tuple(config.data.augment), data.num_classes), test_time=test_time)
    train_step, eval_step, views_step = steps(norms_at=LogWindows(train.log_every, steps_per_epoch))
    # Vmapped trials measure the norms every step: under vmap the per-trial step count makes the windows'
    # condition a select that would run the measuring branch every step anyway.
    trials_step = steps(norms_at=None)[0]
    return Experiment(config, data, task, model, schedule, state, parallel.compile_train_step(train_step),
                      parallel.compile_eval_step(eval_step), input_spec_of(sample), parallel, trials_step, eval_step, tx,
                      notes, test_time, None if views_step is None else parallel.compile_eval_step(views_step))
