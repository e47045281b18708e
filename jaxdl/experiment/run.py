"""``train_and_evaluate(config, workdir)``: build everything an experiment config names and run `fit`.

This is the one place where config meets library: data set, model, loss, metrics, optimizer, steps.
`evaluate_workdir` rebuilds the same pieces from a finished run's ``config.json`` and its checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import platform
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import checkpoint
from jaxdl.checkpoint import CheckpointPolicy
from jaxdl.config import apply_override, as_tuples, config_from_json, config_to_json, model_arguments, validate_config
from jaxdl.data.augment import make_augmentation
from jaxdl.data.datasets import DatasetSplits, load_dataset
from jaxdl.data.pipeline import ArrayDataset, map_inputs, num_train_batches
from jaxdl.data.test_time import TestTimeAugmentation, make_test_time_augmentation
from jaxdl.detection import detection_metrics
from jaxdl.distributed.parallel import Parallel, configure_compilation_cache, make_parallel
from jaxdl.losses import make_loss, make_penalty
from jaxdl.metrics import (
    MetricsFn,
    classification_metrics,
    predicted_classes,
    regression_metrics,
    segmentation_metrics,
    sequence_metrics,
)
from jaxdl.models import DenseHead, create_model, model_constructor, model_fields
from jaxdl.nn.embedding import check_token_ids
from jaxdl.report.classification import save_predictions, write_report
from jaxdl.report.dense_outputs import detection_outputs, segmentation_outputs
from jaxdl.report.gan import JudgeEachEpoch, SampleJudge, SampleSheets
from jaxdl.report.tensorboard import TensorBoardLogger
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.gan import create_gan_state, make_gan_eval_step, make_gan_train_step
from jaxdl.training.loop import evaluate, fit, predict_in_order, scalar_metrics
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import (
    InputSpec,
    TrainState,
    count_params,
    create_train_state,
    input_spec_of,
)
from jaxdl.training.step import make_eval_step, make_predict_step, make_train_step
from jaxdl.training.weight_average import check_decay, copy_params
from jaxdl.transfer.backbone import load_backbone, restore_backbone
from jaxdl.transfer.features import extract_features
from jaxdl.transfer.freeze import check_mode, parameter_labels, transfer_optimizer


@dataclasses.dataclass
class Experiment:
    """The pieces an experiment config builds: data, model, optimizer, initial state and compiled steps."""

    config: ml_collections.ConfigDict
    data: DatasetSplits
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


SEGMENTATION_LOSSES = ("dice", "cross_entropy_dice")
# Losses that read one logit per class in the model's last axis (yolo: 5 box numbers, then the classes).
_CLASS_LOGIT_LOSSES = ("softmax_cross_entropy", "sequence_cross_entropy", *SEGMENTATION_LOSSES)


def _check_output_classes(model: Any, state: TrainState, sample: Any, num_classes: int | None, loss_name: str) -> None:
    """Refuse a model whose logits do not have one entry per class of the data: labels beyond the last logit
    would give no gradient and no error (a 2-class head on 4-class masks trains on half the classes)."""
    if not num_classes or loss_name not in (*_CLASS_LOGIT_LOSSES, "yolo"):
        return
    outputs = jax.eval_shape(lambda variables, x: model.apply(variables, x, train=False), state.variables(), sample)
    expected = num_classes + 5 if loss_name == "yolo" else num_classes
    if not hasattr(outputs, "shape") or outputs.shape[-1] != expected:
        found = getattr(outputs, "shape", type(outputs).__name__)
        raise ValueError(f"the data has {num_classes} classes, so loss {loss_name!r} needs logits with {expected} entries in "
                         f"the last axis, but the model {type(model).__name__} outputs {found}; set its num_outputs "
                         f"(num_classes for per-pixel and per-cell models) to match")


def make_metrics(loss_config: ml_collections.ConfigDict, num_classes: int) -> MetricsFn:
    """The metrics that fit the loss: regression for ``mse``, per-step for ``sequence_cross_entropy``, per-pixel
    (IoU) for the segmentation losses, detection for ``yolo``, classification (confusion matrix over
    ``num_classes``) otherwise."""
    if loss_config.name == "mse":
        return regression_metrics()
    if loss_config.name in SEGMENTATION_LOSSES:
        return segmentation_metrics(num_classes)
    if loss_config.name == "yolo":
        return detection_metrics()
    if loss_config.name == "sequence_cross_entropy":
        return sequence_metrics(loss_config.ignore_label)
    return classification_metrics(num_classes)


def build_experiment(config: ml_collections.ConfigDict, data: DatasetSplits | None = None,
                     tunable: bool = False) -> Experiment:
    """Validate ``config`` and build its data, model, optimizer, initial state and compiled steps (with
    ``tunable``, an optimizer whose continuous hyperparameters live in its state: see `make_optimizer`)."""
    validate_config(config)
    data = data if data is not None else load_dataset(config.data)
    model_kwargs = model_arguments(config)
    accepted = model_fields(model_constructor(config.model.name))
    defaults = dict(data.model_defaults)
    if config.loss.name != "mse":
        # Classifiers name their output count num_outputs; per-pixel and per-cell models name it num_classes.
        defaults.setdefault("num_outputs", data.num_classes)
        defaults.setdefault("num_classes", data.num_classes)
    for key, value in defaults.items():
        if key in accepted:
            model_kwargs.setdefault(key, value)
    steps_per_epoch = num_train_batches(len(data.train), config.data.batch_size)
    sample = map_inputs(lambda a: a[:1], data.train.x)
    combine = _test_time_combine(config)  # before any model is built: a GAN or a mask has no views to average
    if config.loss.name == "gan":
        return _gan_experiment(config, data, model_kwargs, sample, steps_per_epoch)
    if config.train.generator_ema:
        raise ValueError(f"train.generator_ema averages a GAN's generator; this run trains with loss.name="
                         f"{config.loss.name!r}, so leave it at 0 (train.ema_decay averages a model's weights)")
    train = config.train
    ema_decay = check_decay(train.ema_decay)
    transfer = config.transfer
    notes: dict[str, Any] = {}
    if transfer.pretrained or transfer.workdir or config.model.name == "transfer":
        if tunable:
            raise ValueError("hyperparameter search with vmapped trials does not support transfer models; "
                             "search them one trial at a time or without config.transfer")
        model, tx, schedule, state, notes, data = _transfer_setup(config, data, model_kwargs, sample, steps_per_epoch,
                                                                  ema_decay > 0)
        sample = map_inputs(lambda a: a[:1], data.train.x)
    else:
        model = create_model(config.model.name, **model_kwargs)
        tx, schedule = make_optimizer(config.optimizer, max(steps_per_epoch, 1), config.train.num_epochs, tunable)
        state = create_train_state(model, tx, sample, config.seed, train.precision, average=ema_decay > 0)
    _check_token_data(data, getattr(model, "vocab_size", getattr(getattr(model, "backbone", None), "vocab_size", None)))
    _check_output_classes(model, state, sample, data.num_classes, config.loss.name)
    loss_fn = make_loss(config.loss)
    metrics_fn = make_metrics(config.loss, data.num_classes)
    parallel = make_parallel(train.strategy, as_tuples(train.mesh_shape), as_tuples(train.sharding_rules), state.params)
    parallel.check_batch_size(config.data.batch_size, "data.batch_size")
    configure_compilation_cache(train.compilation_cache_dir)
    step_model = parallel.prepare_model(model)
    precision = {"axis_name": parallel.axis_name, "precision": train.precision}
    train_step = make_train_step(step_model, loss_fn, metrics_fn, tx, make_penalty(config.loss),
                                 make_augmentation(tuple(config.data.augment), data.num_classes),
                                 accumulation_steps=train.accumulation_steps, ema_decay=ema_decay, **precision)
    eval_step = make_eval_step(step_model, loss_fn, metrics_fn, **precision)
    test_time = _test_time_augmentation(config, sample, combine)
    test_time_eval_step = None if test_time is None else parallel.compile_eval_step(
        make_eval_step(step_model, loss_fn, metrics_fn, test_time=test_time, **precision))
    return Experiment(config, data, model, schedule, state, parallel.compile_train_step(train_step),
                      parallel.compile_eval_step(eval_step), input_spec_of(sample), parallel, train_step, eval_step, tx,
                      notes, test_time, test_time_eval_step)


TEST_TIME_COMBINES = {"softmax_cross_entropy": "probabilities", "binary_cross_entropy": "sigmoid", "mse": "mean"}


def _test_time_combine(config: ml_collections.ConfigDict) -> str | None:
    """How ``data.test_time_augment``'s views are averaged for this loss (None without views); an error where the
    outputs are not one prediction per image (a mask or a box grid would have to be mapped back through each
    view, a GAN has no prediction)."""
    if not tuple(config.data.test_time_augment):
        return None
    if config.loss.name not in TEST_TIME_COMBINES:
        raise ValueError(f"data.test_time_augment averages one prediction per image; loss {config.loss.name!r} "
                         f"is not supported (supported: {sorted(TEST_TIME_COMBINES)}): set data.test_time_augment=()")
    return TEST_TIME_COMBINES[config.loss.name]


def _test_time_augmentation(config: ml_collections.ConfigDict, sample: Any, combine: str | None) -> TestTimeAugmentation | None:
    """``data.test_time_augment``'s views averaged by ``combine``; an error where the model's inputs (after a
    transfer's feature extraction, say) are not images."""
    if combine is None:
        return None
    specs = tuple(config.data.test_time_augment)
    if not isinstance(sample, jax.Array | np.ndarray) or np.ndim(sample) != 4:
        shape = np.shape(sample) if isinstance(sample, jax.Array | np.ndarray) else type(sample).__name__
        raise ValueError(f"data.test_time_augment={specs} needs image inputs [batch, height, width, channels]; "
                         f"this data set's inputs are {shape}")
    return make_test_time_augmentation(specs, combine)


def _gan_experiment(config: ml_collections.ConfigDict, data: DatasetSplits, model_kwargs: dict[str, Any], sample: Any,
                    steps_per_epoch: int) -> Experiment:
    """A GAN (``loss.name="gan"``, ``model.name="gan"``): generator and discriminator, each with its own copy of
    the configured optimizer, trained by `make_gan_train_step`; labels are not used."""
    if config.model.name != "gan":
        raise ValueError(f"loss.name='gan' trains a generator against a discriminator: it needs model.name='gan', "
                         f"got {config.model.name!r}")
    parallel = make_parallel(config.train.strategy, as_tuples(config.train.mesh_shape), as_tuples(config.train.sharding_rules))
    if parallel.strategy != "jit" or config.train.precision != "float32" or config.train.accumulation_steps != 1:
        raise ValueError("GAN training runs on one device in float32 without accumulation: set train.strategy='jit', "
                         "train.precision='float32', train.accumulation_steps=1")
    model_kwargs.setdefault("image_shape", tuple(int(d) for d in sample.shape[1:]))
    model = create_model("gan", **model_kwargs)
    tx, schedule = make_optimizer(config.optimizer, max(steps_per_epoch, 1), config.train.num_epochs)
    if config.train.ema_decay:
        raise ValueError("train.ema_decay averages a classifier's weights; a GAN averages its generator with "
                         "train.generator_ema")
    ema = check_decay(config.train.generator_ema, "train.generator_ema")
    state = create_gan_state(model, tx, tx, jnp.asarray(sample), config.seed, generator_ema=ema > 0)
    train_step = make_gan_train_step(model, tx, tx, ema_decay=ema or None,
                                     label_smoothing=float(config.loss.label_smoothing))  # one-sided here
    eval_step = make_gan_eval_step(model)
    configure_compilation_cache(config.train.compilation_cache_dir)
    return Experiment(config, data, model, schedule, state, parallel.compile_train_step(train_step),
                      parallel.compile_eval_step(eval_step), input_spec_of(sample), parallel, train_step, eval_step, tx)


def _transfer_setup(config: ml_collections.ConfigDict, data: DatasetSplits, model_kwargs: dict[str, Any], sample: Any,
                    steps_per_epoch: int, average: bool) -> tuple[Any, Any, Any, TrainState, dict[str, Any], DatasetSplits]:
    """Backbone + new head, per-group optimizer, initial state with the pretrained backbone restored (and, with
    ``average``, the weights' moving average starting from them).

    With ``transfer.cache_features`` (feature extraction only) the frozen backbone runs once over every
    split, and the returned model is the head alone, trained on the cached features (the returned data)."""
    transfer = config.transfer
    mode = check_mode(transfer.mode)
    if config.model.name != "transfer":
        raise ValueError(f"transfer.pretrained/transfer.workdir need model.name='transfer', got {config.model.name!r}")
    freeze_blocks = transfer.freeze_blocks if mode == "freeze_first" else 0
    backbone = load_backbone(transfer.pretrained or None, transfer.workdir or None, transfer.cache_dir, freeze_blocks)
    if transfer.backbone_batch_stats not in ("frozen", "train"):
        raise ValueError(f"transfer.backbone_batch_stats must be 'frozen' or 'train', got {transfer.backbone_batch_stats!r}")
    train_backbone = mode == "scratch" or (mode != "feature_extraction" and transfer.backbone_batch_stats == "train")
    model = create_model("transfer", backbone=backbone.module, inputs=backbone.inputs, train_backbone=train_backbone,
                         **model_kwargs)
    reference = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
                                                  sample, train=False))
    labels = parameter_labels(reference["params"], mode, transfer.freeze_blocks)

    schedules: dict[float, Any] = {}  # the head's (at the configured rate) is the one logged

    def make_tx(learning_rate: float) -> Any:
        optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
        optimizer.learning_rate = learning_rate
        group_tx, schedules[learning_rate] = make_optimizer(optimizer, max(steps_per_epoch, 1), config.train.num_epochs)
        return group_tx

    tx = transfer_optimizer(make_tx, config.optimizer.learning_rate, transfer.backbone_lr_scale, labels)
    schedule = schedules[config.optimizer.learning_rate]
    state = create_train_state(model, tx, sample, config.seed, config.train.precision, average)
    dropped: list[str] = []
    if mode != "scratch":
        variables, dropped = restore_backbone(state.variables(), backbone.variables)
        params = jax.tree.map(jnp.asarray, variables["params"])
        state = state.replace(params=params, batch_stats=jax.tree.map(jnp.asarray, variables.get("batch_stats", {})),
                              opt_state=tx.init(params), average=copy_params(params) if average else None)
    sizes = {label: 0 for label in ("head", "backbone", "frozen")}
    for label, leaf in zip(jax.tree.leaves(labels), jax.tree.leaves(state.params)):
        sizes[label] += int(np.size(leaf))
    notes = {"transfer": {"backbone": backbone.source, "mode": mode, "restored": mode != "scratch",
                          "dropped_from_source": dropped, "parameters": sizes}}
    if transfer.cache_features:
        if mode != "feature_extraction":
            raise ValueError(f"transfer.cache_features needs transfer.mode='feature_extraction' (a frozen backbone), got {mode!r}")
        if config.data.augment:
            raise ValueError(f"transfer.cache_features computes each example's features once, so data.augment "
                             f"{tuple(config.data.augment)} cannot apply; set data.augment=() or turn caching off")
        start = time.perf_counter()
        variables = state.variables()
        # The variables are an argument: closed over, 3.4M backbone weights would be baked into the program.
        run_backbone = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.features(x, False)))
        features = functools.partial(run_backbone, variables)
        batch = config.data.eval_batch_size

        def cached(split: ArrayDataset) -> ArrayDataset:
            return extract_features(features, split, batch)

        data = dataclasses.replace(data, train=cached(data.train), validation=cached(data.validation), test=cached(data.test),
                                   test_parts={k: cached(v) for k, v in data.test_parts.items()})
        model = DenseHead(hidden_sizes=(), num_outputs=data.num_classes, dropout_rate=model_kwargs.get("head_dropout", 0.0))
        tx, schedule = make_optimizer(config.optimizer, max(steps_per_epoch, 1), config.train.num_epochs)
        state = create_train_state(model, tx, data.train.x[:1], config.seed, config.train.precision, average)
        notes["transfer"].update(features_cached=True, feature_dim=int(data.train.x.shape[1]),
                                 feature_seconds=time.perf_counter() - start)
    return model, tx, schedule, state, notes, data


def checkpoint_policy(config: ml_collections.ConfigDict) -> CheckpointPolicy:
    """The run's `CheckpointPolicy` from ``config.train.checkpoint`` (best-N ranks by the early-stopping monitor
    unless ``best_metric`` names another)."""
    section = config.train.checkpoint
    return CheckpointPolicy(every_epochs=section.every_epochs, every_steps=section.every_steps,
                            keep_latest=section.keep_latest, keep_best=section.keep_best,
                            best_metric=section.best_metric or config.train.early_stopping.monitor,
                            mode="auto" if section.best_metric else config.train.early_stopping.mode,
                            asynchronous=section.asynchronous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       resume: bool | None = None) -> dict[str, Any]:
    """Train the experiment ``config`` into ``workdir`` and return its summary (also in ``summary.json``).

    A workdir that already holds checkpoints of this run is resumed from the newest good one (``resume``
    None); ``resume=True`` insists on a checkpoint, ``False`` refuses to touch one."""
    start = time.perf_counter()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    exp = build_experiment(config)
    if exp.data.tokenizer is not None:
        # Retraining a tokenizer need not reproduce its ids: the run keeps the one it trained with.
        tokenizer_path = (workdir / "tokenizer.json").resolve()
        exp.data.tokenizer.save(str(tokenizer_path))
        config = ml_collections.ConfigDict(config.to_dict())
        config.data.tokenizer_file = str(tokenizer_path)
    (workdir / "config.json").write_text(config_to_json(config))
    es = config.train.early_stopping
    early_stopping = EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience,
                                   min_delta=es.min_delta, restore_best=es.restore_best)
    callbacks = []
    if config.train.tensorboard and jax.process_index() == 0:
        callbacks.append(TensorBoardLogger(workdir / "tensorboard"))
    judge = None
    if config.loss.name == "gan" and jax.process_index() == 0:
        callbacks.append(SampleSheets(exp.model, workdir))
        if config.train.judge_workdir:
            judge = SampleJudge(config.train.judge_workdir)
            callbacks.append(JudgeEachEpoch(exp.model, judge, workdir, config.train.progress))
    result = fit(
        exp.state, train_step=exp.train_step, eval_step=exp.eval_step, train_data=exp.data.train,
        batch_size=config.data.batch_size, num_epochs=config.train.num_epochs, seed=config.data.seed,
        validation_data=exp.data.validation, test_data=exp.data.test, eval_batch_size=config.data.eval_batch_size,
        early_stopping=early_stopping, workdir=workdir, log_every=config.train.log_every, schedule=exp.schedule,
        input_spec=exp.input_spec, progress=config.train.progress, parallel=exp.parallel, callbacks=callbacks,
        checkpoint_policy=checkpoint_policy(config), resume=resume,
    )
    for callback in callbacks:
        callback.close()
    summary = dict(result.summary)
    placed = exp.parallel.put_state(result.state)
    if exp.test_time_eval_step is not None:
        # The epoch was chosen on single views (averaging views every epoch would multiply evaluation's cost);
        # the returned model is then reported both ways.
        summary["single_view"] = {k: summary[k] for k in ("validation", "test") if k in summary}
        summary["test_time_augment"] = list(config.data.test_time_augment)
        for split in summary["single_view"]:
            summary[split] = scalar_metrics(evaluate(placed, exp.test_time_eval_step, getattr(exp.data, split),
                                               config.data.eval_batch_size, exp.parallel))
    if config.train.evaluate_train:
        summary["train_eval"] = evaluate(placed, exp.eval_step, exp.data.train, config.data.eval_batch_size, exp.parallel)
        # Positive gaps mean the model does better on what it trained on: validation loss minus train loss,
        # train score minus validation score.
        train_eval, validation = summary["train_eval"], summary["validation"]
        summary["train_validation_gap"] = {
            k: (validation[k] - train_eval[k]) if k in ("loss", "mae", "rmse") else (train_eval[k] - validation[k])
            for k in ("loss", "accuracy", "mae", "rmse") if k in train_eval}
    if exp.data.test_parts:
        summary["test_parts"] = {name: evaluate(placed, exp.eval_step, part, config.data.eval_batch_size, exp.parallel)
                                 for name, part in exp.data.test_parts.items()}
    summary.update(exp.notes)
    summary.update(
        experiment=config.name, dataset=exp.data.name, model=config.model.name,
        num_params=count_params(result.state.params),
        total_seconds=time.perf_counter() - start,
        machine={"platform": platform.platform(), "backend": jax.default_backend(),
                 "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
                 "strategy": exp.parallel.strategy, "precision": config.train.precision},
        **_in_original_units(summary.get("test"), exp.data),
        train_examples=len(exp.data.train), validation_examples=len(exp.data.validation),
        test_examples=len(exp.data.test),
    )
    if jax.process_index() == 0:
        if config.loss.name in SEGMENTATION_LOSSES:
            segmentation_outputs(exp.model, result.state, exp.data, workdir, config.data.eval_batch_size)
        elif config.loss.name == "yolo":
            summary["test"].update(detection_outputs(exp.model, result.state, exp.data, workdir, config.data.eval_batch_size))
        elif judge is not None:
            summary["samples"] = judge(exp.model, result.state)
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        if _is_classification(config, exp.data):
            y_pred = predict_classes(exp.model, result.state, exp.data.test, config.data.eval_batch_size, exp.test_time)
            save_predictions(workdir, exp.data.test.y, y_pred, exp.data.class_names, exp.data.test.x)
        write_report(workdir)
    return summary


def _is_classification(config: ml_collections.ConfigDict, data: DatasetSplits) -> bool:
    return config.loss.name in ("softmax_cross_entropy", "binary_cross_entropy") and np.ndim(data.test.y) == 1


def predict_classes(model: Any, state: TrainState, data: ArrayDataset, batch_size: int,
                    test_time: TestTimeAugmentation | None = None) -> np.ndarray:
    """The predicted class of every example of ``data`` (in order), from ``state`` in inference mode (averaged
    over ``test_time``'s views when given)."""
    step = make_predict_step(model, test_time)
    predict = jax.jit(lambda s, x: predicted_classes(step(s, x)))  # state an argument, not a constant
    return predict_in_order(lambda x: predict(state, x), data, batch_size)


def _in_original_units(test: dict[str, float] | None, data: DatasetSplits) -> dict[str, Any]:
    """Regression errors multiplied back by the data's target scale, beside the data's baselines."""
    out: dict[str, Any] = {}
    if data.baselines:
        out["baselines"] = data.baselines
    if test and "mae" in test:
        out["test_original_units"] = {k: test[k] * data.target_scale for k in ("mae", "rmse")}
    return out


EVALUATION_FIELDS = ("data.test_time_augment", "data.eval_batch_size")  # what evaluate may change: not the model


def evaluate_workdir(workdir: str | pathlib.Path, splits: tuple[str, ...] = ("validation", "test"),
                     overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Restore the checkpoint a finished run left in ``workdir`` and evaluate it on ``splits``, with
    ``overrides`` of how it is evaluated (``EVALUATION_FIELDS``, e.g. ``"data.test_time_augment=('shifts',)"``)."""
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{workdir} has no config.json: is it the --workdir of a `jaxdl train` run?")
    config = config_from_json(config_path.read_text())
    for assignment in overrides:
        field = assignment.partition("=")[0].removeprefix("config.")
        if field not in EVALUATION_FIELDS:
            raise ValueError(f"evaluate can change only how a trained model is evaluated ({list(EVALUATION_FIELDS)}), "
                             f"not {field!r}")
        apply_override(config, assignment)
    if (workdir / "tokenizer.json").is_file():  # the run's own tokenizer, wherever the workdir has moved
        config.data.tokenizer_file = str(workdir / "tokenizer.json")
    exp = build_experiment(config)
    # The run's returned state (the early-stopping best, say), which need not be the newest checkpoint.
    step = checkpoint.returned_step(workdir)
    state = exp.parallel.put_state(checkpoint.restore_checkpoint(workdir / "checkpoints", exp.state, step))
    eval_step = exp.test_time_eval_step or exp.eval_step
    return {split: evaluate(state, eval_step, getattr(exp.data, split), config.data.eval_batch_size, exp.parallel)
            for split in splits}
