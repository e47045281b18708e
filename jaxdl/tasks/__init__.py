"""Tasks: what a kind of problem asks of training (loss, metrics, output checks, test-time views, state and
steps, hooks, what is written after training), found by the loss name a config gives.

Every module of this package is imported here, and each `Task` subclass registers the loss names it owns,
so a new task is one new file: nothing else in jaxdl names it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from jaxdl.tasks.base import Task, registered_losses, task_class

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def get_task(loss_config: Any, num_classes: int | None = None) -> Task:
    """The task that trains with ``loss_config.name`` (``config.loss``), for data with ``num_classes`` classes."""
    return task_class(str(loss_config["name"]))(loss_config, num_classes)


def make_loss(loss_config: Any) -> Any:
    """``loss(outputs, labels) -> [batch]`` for ``config.loss`` (its task's loss, with its options)."""
    return get_task(loss_config).loss()


__all__ = ["Task", "get_task", "make_loss", "registered_losses", "task_class"]
