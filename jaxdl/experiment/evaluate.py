"""``evaluate_workdir(workdir)``: a finished run evaluated again from its ``config.json`` and its checkpoint,
optionally with another evaluation setting (test-time views, batch size), never another model."""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

from jaxdl import checkpoint
from jaxdl.config import apply_override, config_from_json
from jaxdl.experiment.build import build_experiment
from jaxdl.experiment.run import checkpoint_policy
from jaxdl.training.evaluation import evaluate

EVALUATION_FIELDS = ("data.test_time_augment", "data.eval_batch_size")  # what evaluate may change: not the model


def restore_run(workdir: str | pathlib.Path, overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """``(experiment, state)`` of a finished run: the experiment rebuilt from ``workdir``'s ``config.json`` (with
    ``overrides`` of how it is evaluated, `EVALUATION_FIELDS`) and the state of its returned checkpoint, or of the
    best surviving step when that one is damaged (a warning names both)."""
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
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(f"no checkpoint under {workdir / 'checkpoints'}")
    with checkpoint.Checkpointer(workdir / "checkpoints", checkpoint_policy(config)) as checkpointer:
        restored = checkpointer.restore(exp.state, step, fallback=True)[0]
    return exp, restored


def evaluate_workdir(workdir: str | pathlib.Path, splits: tuple[str, ...] = ("validation", "test"),
                     overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Restore the checkpoint a finished run left in ``workdir`` and evaluate it on ``splits``, with
    ``overrides`` of how it is evaluated (``EVALUATION_FIELDS``, e.g. ``"data.test_time_augment=('shifts',)"``)."""
    exp, restored = restore_run(workdir, overrides)
    state = exp.parallel.put_state(restored)
    eval_step = exp.test_time_eval_step or exp.eval_step
    return {split: evaluate(state, eval_step, getattr(exp.data, split), exp.config.data.eval_batch_size, exp.parallel)
            for split in splits}
