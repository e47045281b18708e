"""``train_and_evaluate(config, workdir)``: build the experiment, run the training loop into ``workdir``,
evaluate the returned model and write its summary, the task's outputs and the report."""

from __future__ import annotations

import json
import pathlib
import platform
import time
from typing import Any, Sequence

import jax
import ml_collections

from jaxdl import checkpoint
from jaxdl.checkpoint import CheckpointPolicy
from jaxdl.config import config_from_json, config_to_json, flat_config
from jaxdl.data.datasets import DatasetSplits
from jaxdl.experiment.build import build_experiment
from jaxdl.experiment.config_change import check_config_change
from jaxdl.report.classification import write_report
from jaxdl.report.curves import LearningCurves
from jaxdl.report.mlflow_logger import MLflowLogger
from jaxdl.report.tensorboard import TensorBoardLogger
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.evaluation import evaluate, scalar_metrics
from jaxdl.training.hooks import Hook
from jaxdl.training.hooks.profile import ProfileSteps, parse_steps
from jaxdl.training.loop import fit
from jaxdl.training.state import count_params
from jaxdl.util.atomic_file import write_text_atomically
from jaxdl.util.workdir_lock import hold_workdir


def checkpoint_policy(config: ml_collections.ConfigDict) -> CheckpointPolicy:
    """The run's `CheckpointPolicy` from ``config.train.checkpoint`` (best-N ranks by the early-stopping monitor
    unless ``best_metric`` names another)."""
    section = config.train.checkpoint
    return CheckpointPolicy(every_epochs=section.every_epochs, every_steps=section.every_steps,
                            keep_latest=section.keep_latest, keep_best=section.keep_best,
                            best_metric=section.best_metric or config.train.early_stopping.monitor,
                            mode="auto" if section.best_metric else config.train.early_stopping.mode,
                            asynchronous=section.asynchronous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, resume: bool | None = None,
                       allow_changes: Sequence[str] = ()) -> dict[str, Any]:
    """Train the experiment ``config`` into ``workdir`` and return its summary (also in ``summary.json``).

    A workdir that already holds checkpoints of this run is resumed from the newest good one (``resume``
    None); ``resume=True`` insists on a checkpoint, ``False`` refuses to touch one. A resumed run must have the
    saved ``config.json``'s configuration, except the keys `check_config_change` lets ``allow_changes`` name.
    The workdir is locked for the whole run (a second run on it fails at once), and nothing in it changes
    until the configuration, the data and the model have passed their checks."""
    start = time.perf_counter()
    with hold_workdir(workdir, writer=jax.process_index() == 0) as workdir:
        return _train_and_evaluate(config, workdir, resume, allow_changes, start)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path, resume: bool | None,
                        allow_changes: Sequence[str], start: float) -> dict[str, Any]:
    has_checkpoint = checkpoint.latest_step(workdir / "checkpoints") is not None
    if resume and not has_checkpoint:
        raise FileNotFoundError(f"nothing to resume: no checkpoint under {workdir}/checkpoints")
    if resume is False and has_checkpoint:
        raise ValueError(f"{workdir}/checkpoints already holds checkpoints of a run; resume it or use another workdir")
    tokenizer_path = (workdir / "tokenizer.json").resolve()
    if has_checkpoint:
        if tokenizer_path.is_file():  # the run goes on with the tokenizer it trained with
            config = ml_collections.ConfigDict(config.to_dict())
            config.data.tokenizer_file = str(tokenizer_path)
        if (workdir / "config.json").is_file():
            check_config_change(config_from_json((workdir / "config.json").read_text()), config, str(workdir), allow_changes)
    exp = build_experiment(config)
    if exp.data.tokenizer is not None and not has_checkpoint:
        # Retraining a tokenizer need not reproduce its ids: the run keeps the one it trained with.
        exp.data.tokenizer.save(str(tokenizer_path))
        config = ml_collections.ConfigDict(config.to_dict())
        config.data.tokenizer_file = str(tokenizer_path)
    write_text_atomically(workdir / "config.json", config_to_json(config))
    es = config.train.early_stopping
    early_stopping = EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience,
                                   min_delta=es.min_delta, restore_best=es.restore_best)
    hooks: list[Hook] = []
    if jax.process_index() == 0:
        hooks.append(LearningCurves(workdir, early_stopping))
        if config.train.tensorboard:
            hooks.append(TensorBoardLogger(workdir / "tensorboard"))
        if config.train.mlflow:
            hooks.append(MLflowLogger(config.train.mlflow_tracking_uri or None, experiment_name=config.name,
                                      run_name=workdir.name, params=flat_config(config)))
        hooks += exp.task.hooks(exp.model, config, workdir)
        if config.train.profile:
            hooks.append(ProfileSteps(workdir / "profile", *parse_steps(config.train.profile)))
    result = fit(
        exp.state, train_step=exp.train_step, eval_step=exp.eval_step, train_data=exp.data.train,
        batch_size=config.data.batch_size, num_epochs=config.train.num_epochs, seed=config.data.seed,
        validation_data=exp.data.validation, test_data=exp.data.test, eval_batch_size=config.data.eval_batch_size,
        early_stopping=early_stopping, workdir=workdir, log_every=config.train.log_every, schedule=exp.schedule,
        input_spec=exp.input_spec, progress=config.train.progress, parallel=exp.parallel, hooks=hooks,
        checkpoint_policy=checkpoint_policy(config), resume=resume,
    )
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
        outputs = exp.task.write_outputs(exp.model, result.state, exp.data, workdir, config.data.eval_batch_size,
                                         exp.test_time, hooks)
        summary.setdefault("test", {}).update(outputs.pop("test", {}))
        summary.update(outputs)
        write_text_atomically(workdir / "summary.json", json.dumps(summary, indent=2))
        write_report(workdir)
    return summary


def _in_original_units(test: dict[str, float] | None, data: DatasetSplits) -> dict[str, Any]:
    """Regression errors multiplied back by the data's target scale, beside the data's baselines."""
    out: dict[str, Any] = {}
    if data.baselines:
        out["baselines"] = data.baselines
    if test and "mae" in test:
        out["test_original_units"] = {k: test[k] * data.target_scale for k in ("mae", "rmse")}
    return out
