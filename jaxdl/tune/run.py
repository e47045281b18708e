"""``run_tuning(config, workdir)``: what `jaxdl tune` does with an experiment's ``search`` section."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections

from jaxdl.config import config_to_json
from jaxdl.tune.kfold import cross_validate
from jaxdl.tune.search import grid_trials, random_trials, run_search
from jaxdl.tune.stacked import SCHEDULES
from jaxdl.util.atomic_file import write_text_atomically
from jaxdl.util.workdir_lock import hold_workdir

KINDS = ("grid", "random", "kfold")


def run_tuning(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Run the search or cross-validation that ``config.search`` describes and write its results to ``workdir``.

    ``kind="grid"``: every combination of ``space`` (``((field, [values...]), ...)``); ``"random"``: ``trials``
    draws from ``space`` (``((field, "loguniform(a, b)"), ...)``) seeded by ``seed``; ``"kfold"``: ``k``-fold
    cross-validation; ``schedule`` says how trials sharing a program train (`fit_stacked`). Returns (and
    writes to ``tune.json``) a summary; searches also write ``search.csv`` and ``search.png``.
    """
    search = config.search
    if search.kind not in KINDS:
        raise ValueError(f"config.search.kind is {search.kind!r}; set it to one of {list(KINDS)} "
                         "(or pass --grid/--random/--kfold to jaxdl tune)")
    if search.schedule not in SCHEDULES:
        raise ValueError(f"config.search.schedule is {search.schedule!r}; valid: {list(SCHEDULES)}")
    with hold_workdir(workdir, writer=jax.process_index() == 0) as workdir:  # one search per directory
        return _run_tuning(config, search, workdir)


def _run_tuning(config: ml_collections.ConfigDict, search: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
    write_text_atomically(workdir / "config.json", config_to_json(config))
    if search.kind == "kfold":
        result = cross_validate(config, k=search.k, schedule=search.schedule)
        summary = {"kind": "kfold", **result.summary()}
    else:
        space = {str(field): values for field, values in search.space}
        if search.kind == "grid":
            trials = grid_trials({k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in space.items()})
        else:
            trials = random_trials(space, search.trials, search.seed)
        result = run_search(config, trials, workdir, metric=search.metric, schedule=search.schedule)
        schedules = {row["group"]: row["schedule"] for row in result.rows}
        summary = {"kind": search.kind, "metric": search.metric, "best": result.best, "trials": len(result.rows),
                   "seconds": result.seconds, "schedule_per_group": [schedules[g] for g in sorted(schedules)]}
    write_text_atomically(workdir / "tune.json", json.dumps(summary, indent=2, default=float))
    return summary
