"""Grid and random hyperparameter search over any config field, vmapped where the trials allow it.

A trial is a dict of overrides ``{"optimizer.learning_rate": 3e-4, "model.dropout_rate": 0.2}``. Trials
are grouped by everything that changes the program (model fields, batch size, the optimizer's name...);
within a group the remaining differences are continuous optimizer hyperparameters (`jaxdl.training.optimizers.TUNABLE`),
which live in the optimizer state, so the whole group trains as one vmapped program. Every trial starts
from the same initial parameters and sees the same batches (common random numbers: differences between
trials come from the hyperparameters alone). Results are ranked by a validation metric, written to
``search.csv`` / ``search.json`` and plotted to ``search.png``.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import itertools
import json
import math
import pathlib
import re
import time
from typing import Any, Iterator, Sequence

import ml_collections
import numpy as np

from jaxdl.config import apply_override, parse_value, validate_config
from jaxdl.data.datasets import load_dataset
from jaxdl.experiment.build import build_experiment
from jaxdl.training.optimizers import TUNABLE, set_hyperparams
from jaxdl.tune.stacked import fit_stacked, stack

DISTRIBUTIONS = ("loguniform", "uniform", "choice")
Trial = dict[str, Any]


def parse_grid(assignments: Sequence[str]) -> dict[str, list[Any]]:
    """``["optimizer.learning_rate=1e-4,3e-4"]`` -> ``{"optimizer.learning_rate": [1e-4, 3e-4]}``."""
    space: dict[str, list[Any]] = {}
    for assignment in assignments:
        path, sep, text = assignment.partition("=")
        values = [parse_value(v.strip()) for v in text.split(",") if v.strip()]
        if not sep or not values:
            raise ValueError(f"a grid axis looks like field.path=v1,v2,...; got {assignment!r}")
        space[path.removeprefix("config.")] = values
    return space


def grid_trials(space: dict[str, Sequence[Any]]) -> list[Trial]:
    """Every combination of the values of ``space`` (the Cartesian product), in order."""
    if not space or any(len(values) == 0 for values in space.values()):
        raise ValueError(f"the search grid is empty: give at least one value for each field, got {dict(space)}")
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]


def sample(distribution: str, rng: np.random.Generator) -> Any:
    """One draw from ``"loguniform(1e-4, 1e-2)"``, ``"uniform(0, 0.5)"`` or ``"choice(0.0, 0.2, 0.5)"``."""
    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", str(distribution))
    name = match[1] if match else None
    try:
        args = list(ast.literal_eval(f"({match[2]},)")) if match and match[2].strip() else []
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read the values of {distribution!r}: {exc}") from exc
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r} in {distribution!r}; valid ones are {list(DISTRIBUTIONS)}")
    if name == "choice":
        if not args:
            raise ValueError(f"choice() needs at least one value: {distribution!r}")
        return args[int(rng.integers(len(args)))]
    if len(args) != 2 or not args[0] < args[1]:
        raise ValueError(f"{name}(low, high) needs low < high, got {distribution!r}")
    low, high = float(args[0]), float(args[1])
    if name == "loguniform":
        if low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {distribution!r}")
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def random_trials(space: dict[str, str], num_trials: int, seed: int) -> list[Trial]:
    """``num_trials`` draws from ``space`` (field -> distribution string), reproducible from ``seed``."""
    if not space or num_trials < 1:
        raise ValueError(f"a random search needs at least one field and one trial, got {dict(space)} x {num_trials}")
    rng = np.random.default_rng(seed)
    return [{key: sample(dist, rng) for key, dist in space.items()} for _ in range(num_trials)]


def _tunable_key(path: str) -> str | None:
    section, _, field = path.partition(".")
    return field if section == "optimizer" and field in TUNABLE else None


def check_trials(config: ml_collections.ConfigDict, trials: Sequence[Trial]) -> None:
    """Raise a clear error when a trial names a config field that does not exist (or a bad value)."""
    for trial in trials:
        probe = ml_collections.ConfigDict(config.to_dict())
        for path, value in trial.items():
            apply_override(probe, f"{path}={value!r}")
        validate_config(probe)


@dataclasses.dataclass
class SearchResult:
    """One row per trial (its overrides, final and best validation metric, group), best first."""

    rows: list[dict[str, Any]]
    metric: str
    seconds: float

    @property
    def best(self) -> dict[str, Any]:
        """The best trial's row."""
        return self.rows[0]


def _groups(trials: Sequence[Trial]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for index, trial in enumerate(trials):
        static = tuple(sorted((k, repr(v)) for k, v in trial.items() if _tunable_key(k) is None))
        groups.setdefault(static, []).append(index)
    return groups


def _ranked(rows: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    def key(row):
        value = row[f"best_{metric}"]
        return (math.isnan(value), -value if mode == "max" else value)

    return sorted(rows, key=key)


def run_search(config: ml_collections.ConfigDict, trials: Sequence[Trial], workdir: str | pathlib.Path | None = None,
               metric: str = "val_accuracy", mode: str = "auto", schedule: str = "auto") -> SearchResult:
    """Train every trial (overrides of ``config``) and rank them by the best ``metric`` over epochs.

    ``mode`` is ``"max"``, ``"min"`` or ``"auto"`` (min for losses and errors). With a ``workdir``, writes
    ``search.csv``, ``search.json`` and ``search.png``. A trial that diverges (NaN) is ranked last, not fatal.
    Each group of trials that share a program trains by `fit_stacked`'s ``schedule``; rows say which ran.
    """
    from jaxdl.report.plots import plot_search

    if not trials:
        raise ValueError("no trials to run: the search space is empty")
    check_trials(config, trials)
    if mode == "auto":
        mode = "min" if any(word in metric for word in ("loss", "mae", "rmse", "error")) else "max"
    start = time.perf_counter()
    base = ml_collections.ConfigDict(config.to_dict())
    base.train.strategy = "jit"  # trials share one device through vmap
    data = load_dataset(base.data)
    rows: list[dict[str, Any] | None] = [None] * len(trials)
    for group_id, (static, members) in enumerate(_groups(trials).items()):
        group_config = ml_collections.ConfigDict(base.to_dict())
        for path, value in trials[members[0]].items():
            if _tunable_key(path) is None:
                apply_override(group_config, f"{path}={value!r}")
        exp = build_experiment(validate_config(group_config), data=data, tunable=True)
        states = []
        for index in members:
            tuned = {_tunable_key(k): float(v) for k, v in trials[index].items() if _tunable_key(k)}
            states.append(exp.state.replace(opt_state=set_hyperparams(exp.state.opt_state, **tuned)))
        batch_size, seed = group_config.data.batch_size, group_config.data.seed

        def batches(epoch: int, train=exp.data.train) -> Iterator[dict]:
            return train.train_batches(batch_size, seed, epoch)

        def validation(val=exp.data.validation) -> Iterator[dict]:
            return val.eval_batches(group_config.data.eval_batch_size)

        result = fit_stacked(stack(states), exp.pure_train_step, exp.pure_eval_step, batches,
                             group_config.train.num_epochs, validation, schedule=schedule)
        final, best = result.final(metric), result.best(metric, mode)
        for position, index in enumerate(members):
            train_loss = result.history[-1][position].get("train_loss", math.nan)
            # A trial whose loss is no longer finite has diverged: whatever its metric says, it ranks last.
            diverged = not math.isfinite(train_loss)
            rows[index] = {**trials[index], f"final_{metric}": math.nan if diverged else float(final[position]),
                           f"best_{metric}": math.nan if diverged else float(best[position]), "diverged": diverged,
                           "group": group_id, "schedule": result.schedule, "trial": index, "train_loss": train_loss}
    search = SearchResult(_ranked(rows, metric, mode), metric, time.perf_counter() - start)
    if workdir is not None:
        write_search(search, pathlib.Path(workdir))
        plot_search(search.rows, metric, pathlib.Path(workdir) / "search.png")
    return search


def write_search(search: SearchResult, workdir: pathlib.Path) -> None:
    """``search.csv`` (one row per trial, best first) and ``search.json`` (the same plus timing)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in search.rows for key in row))
    with (workdir / "search.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(search.rows)
    (workdir / "search.json").write_text(json.dumps(
        {"metric": search.metric, "seconds": search.seconds, "trials": search.rows}, indent=2, default=float))
