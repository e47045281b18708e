"""What a resumed run may change of the config its work directory was trained with.

A resumed run must compute what the interrupted one would have: the same model, optimizer, data and data
order. `check_config_change` compares the new config with the saved ``config.json`` key by key and refuses any
change outside two short lists: `COSMETIC` keys (how progress is shown) change freely; `EXTENDABLE` keys
(train longer, keep other checkpoints, evaluate differently) change only when the user names them, because
they change what the finished run reports. ``train.num_epochs`` is extendable only under a constant
learning-rate schedule: any other schedule is laid out over the run's epochs, so more epochs is another program.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import ml_collections

from jaxdl.config import config_to_json

COSMETIC = frozenset({"train.progress", "train.log_every", "train.tensorboard", "train.profile",
                       "train.mlflow", "train.mlflow_tracking_uri"})
EXTENDABLE = frozenset({
    "train.num_epochs", "train.early_stopping.patience", "train.evaluate_train", "data.eval_batch_size",
    "train.checkpoint.keep_latest", "train.checkpoint.keep_best", "train.checkpoint.every_epochs",
    "train.checkpoint.every_steps", "train.checkpoint.asynchronous",
})


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def changed_keys(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, new value)}`` for every key whose value differs, or that only one config has
    (its missing value is shown as ``"<absent>"``)."""
    # Compared as config.json holds them (tuples as lists), so a saved config equals the one it was saved from.
    before, after = _flat(json.loads(config_to_json(saved))), _flat(json.loads(config_to_json(new)))
    return {key: (before.get(key, "<absent>"), after.get(key, "<absent>"))
            for key in sorted(before.keys() | after.keys()) if before.get(key, "<absent>") != after.get(key, "<absent>")}


def check_config_change(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict, workdir: str,
                        allowed: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the keys if ``new`` may not resume the run ``saved`` describes (see the module
    docstring); ``allowed`` are the `EXTENDABLE` keys the user accepts a change of (``--allow-change KEY``)."""
    allowed = set(allowed)
    unknown = sorted(allowed - EXTENDABLE)
    if unknown:
        raise ValueError(f"--allow-change accepts only keys a resumed run can change safely ({sorted(EXTENDABLE)}), "
                         f"not {unknown}")
    changes = {k: v for k, v in changed_keys(saved, new).items() if k not in COSMETIC}
    schedule = saved.to_dict().get("optimizer", {}).get("schedule", "constant")
    refused = {k: v for k, v in changes.items()
               if k not in EXTENDABLE or (k == "train.num_epochs" and schedule != "constant")}
    unconfirmed = {k: v for k, v in changes.items() if k not in refused and k not in allowed}
    if refused:
        described = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in refused.items())
        why = (" (under the " + repr(schedule) + " schedule the number of epochs shapes the learning rate)"
               if "train.num_epochs" in refused else "")
        raise ValueError(f"cannot resume {workdir} with another configuration: {described} would change the "
                         f"program or the data order{why}. Resume with the run's own values, or train into "
                         "another --workdir")
    if unconfirmed:
        described = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in unconfirmed.items())
        flags = " ".join(f"--allow-change {k}" for k in unconfirmed)
        raise ValueError(f"resuming {workdir} would change {described}; the run resumes as it was trained unless "
                         f"you confirm: add {flags}")
