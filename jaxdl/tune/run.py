"""``run_tuning(config, workdir)``: what `jaxdl tune` does with an experiment's ``search`` section."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

from jaxdl.config import config_to_json
from jaxdl.tune.kfold import cross_validate
from jaxdl.tune.search import grid_trials, random_trials, run_search
from jaxdl.tune.stacked import SCHEDULES

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
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config_to_json(config))
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
    (workdir / "tune.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
