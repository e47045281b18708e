"""The `Task` protocol: what a kind of problem asks of training, so the trainer never asks which problem it is.

A task owns the loss names a config may give (``config.loss.name``), and from them builds the per-example
loss, the metrics, the model hyperparameters the data implies (one output per class), the check that a model's
outputs fit the data, how test-time views of one input combine, the state and steps (supervised by default; a
GAN trains two networks), the hooks that watch training, and what it writes after training. Every task
registers itself by subclassing `Task`; `jaxdl.tasks.get_task` finds it by loss name, so a new task is one file.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, ClassVar

import jax
import ml_collections
import numpy as np
import optax

from jaxdl.losses import LossFn, make_penalty
from jaxdl.metrics import MetricsFn
from jaxdl.training.state import TrainState, create_train_state
from jaxdl.training.step import make_eval_step, make_train_step
from jaxdl.training.step_norms import LogWindows

_REGISTRY: dict[str, type["Task"]] = {}


class Task:
    """Base class of every task; subclasses set the class attributes and implement `loss` and `metrics`.

    ``losses``: the ``config.loss.name`` values this task trains with. ``test_time_combine``: how predictions
    over test-time views are averaged (a name of `jaxdl.data.test_time.COMBINES`), None where outputs are not
    one prediction per input. ``label_smoothing``: whether ``config.loss.label_smoothing`` applies.
    ``output_extra``: with ``class_outputs``, the model's last axis holds ``num_classes + output_extra``
    entries (detection: 5 box numbers before the classes). ``integer_labels``: labels are class indices (or
    one-hot rows), checked against ``[0, num_classes)`` by `check_labels`.
    """

    losses: ClassVar[tuple[str, ...]] = ()
    test_time_combine: ClassVar[str | None] = None
    label_smoothing: ClassVar[bool] = False
    class_outputs: ClassVar[bool] = False
    integer_labels: ClassVar[bool] = False
    output_extra: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.losses:
            if name in _REGISTRY and _REGISTRY[name] is not cls:
                raise ValueError(f"loss name {name!r} is claimed by both {_REGISTRY[name].__name__} and {cls.__name__}")
            _REGISTRY[name] = cls

    def __init__(self, loss_config: ml_collections.ConfigDict | dict[str, Any], num_classes: int | None = None) -> None:
        self.config = loss_config
        self.name = str(loss_config["name"])
        self.num_classes = num_classes
        self.smoothing = float(loss_config.get("label_smoothing", 0.0) or 0.0)
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {self.smoothing}")
        if self.smoothing and not self.label_smoothing:
            smoothed = sorted(n for n, task in _REGISTRY.items() if task.label_smoothing)
            raise ValueError(f"loss.label_smoothing applies to {smoothed}, not {self.name!r}")

    # -- what training computes ---------------------------------------------------------------------------

    def loss(self) -> LossFn:
        """``loss(outputs, labels) -> [batch]``: one value per example, so padded rows can be masked."""
        raise NotImplementedError

    def metrics(self) -> MetricsFn:
        """``metrics(outputs, labels, per_example_loss, mask) -> sums`` that merge across batches."""
        raise NotImplementedError

    def model_defaults(self, sample: Any) -> dict[str, Any]:
        """Model hyperparameters the data (``sample``: one input batch) implies, used where the model has the field and the config is silent."""
        # Classifiers name their output count num_outputs; per-pixel and per-cell models name it num_classes.
        return {"num_outputs": self.num_classes, "num_classes": self.num_classes} if self.num_classes else {}

    def check_outputs(self, model: Any, state: Any, sample: Any) -> None:
        """Refuse a model whose outputs on ``sample`` (traced abstractly: nothing is computed) do not fit the
        data: labels beyond the last logit would give no gradient and no error."""
        if not (self.class_outputs and self.num_classes):
            return
        outputs = jax.eval_shape(lambda variables, x: model.apply(variables, x, train=False), state.variables(), sample)
        expected = self.num_classes + self.output_extra
        if not hasattr(outputs, "shape") or outputs.shape[-1] != expected:
            found = getattr(outputs, "shape", type(outputs).__name__)
            raise ValueError(f"the data has {self.num_classes} classes, so loss {self.name!r} needs outputs with {expected} "
                             f"entries in the last axis, but the model {type(model).__name__} outputs {found}; set its "
                             f"num_outputs (num_classes for per-pixel and per-cell models) to match")

    def check_labels(self, labels: Any, split: str) -> None:
        """Refuse integer class labels outside ``[0, num_classes)`` in ``split``, naming the first offending
        example: a one-hot of such a label is all zeros, so it would train silently at zero loss."""
        if not (self.num_classes and self.integer_labels):
            return
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer) or labels.ndim == 0:
            return  # one-hot, soft or structured targets: their own losses check them
        ignored = self.ignored_label
        bad = ((labels < 0) | (labels >= self.num_classes)) & (labels != ignored if ignored is not None else True)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = index[0] if len(index) == 1 else index
            raise ValueError(f"{split} label {int(labels[index])} at index {where} is outside [0, {self.num_classes}): "
                             f"the data has {self.num_classes} classes (labels 0 .. {self.num_classes - 1}"
                             + (f", or {ignored} to ignore a step" if ignored is not None else "") + ")")

    @property
    def ignored_label(self) -> int | None:
        """A label value the loss leaves out (padding steps), allowed outside the class range; None here."""
        return None

    def check_config(self, config: ml_collections.ConfigDict, strategy: str) -> None:
        """Refuse settings this task cannot train with (``strategy``: the resolved device strategy), naming them
        and the fix."""
        if config.train.generator_ema:
            raise ValueError(f"train.generator_ema averages a GAN's generator; this run trains with loss.name="
                             f"{self.name!r}, so leave it at 0 (train.ema_decay averages a model's weights)")

    # -- state and steps ----------------------------------------------------------------------------------

    def create_state(self, model: Any, tx: optax.GradientTransformation, sample: Any, config: ml_collections.ConfigDict,
                     average: bool) -> Any:
        """The initial state (`create_train_state`: params, BatchNorm statistics, optimizer state)."""
        return create_train_state(model, tx, sample, config.seed, config.train.precision, average=average)

    def make_steps(self, model: Any, tx: optax.GradientTransformation, config: ml_collections.ConfigDict, *,
                   axis_name: str | None, augment: Callable | None, ema_decay: float,
                   test_time: Callable | None = None, norms_at: LogWindows | None = None,
                   ) -> tuple[Callable, Callable, Callable | None]:
        """The pure ``(train_step, eval_step, test_time_eval_step)`` for ``model`` (the last None without views);
        the train step measures its norms on the steps ending ``norms_at``'s logging windows (every step: None)."""
        loss_fn, metrics_fn = self.loss(), self.metrics()
        precision = {"axis_name": axis_name, "precision": config.train.precision}
        train_step = make_train_step(model, loss_fn, metrics_fn, tx, make_penalty(config.loss), augment,
                                     accumulation_steps=config.train.accumulation_steps, ema_decay=ema_decay,
                                     norms=config.train.step_norms, norms_at=norms_at, **precision)
        eval_step = make_eval_step(model, loss_fn, metrics_fn, **precision)
        views_step = None if test_time is None else make_eval_step(model, loss_fn, metrics_fn, test_time=test_time, **precision)
        return train_step, eval_step, views_step

    # -- around training ----------------------------------------------------------------------------------

    def hooks(self, model: Any, config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[Any]:
        """The `jaxdl.training.hooks.Hook` objects (figures, judges) this task adds to `fit` on process 0 (the
        default: none); `write_outputs` gets them back after training."""
        return []

    def write_outputs(self, model: Any, state: TrainState, data: Any, workdir: pathlib.Path, batch_size: int,
                      test_time: Callable | None, hooks: list[Any]) -> dict[str, Any]:
        """Write what this task leaves after training into ``workdir`` (figures, predictions) and return entries
        for the summary: ``{"test": {...}}`` adds test scores, other keys are summary keys."""
        return {}


def registered_losses() -> dict[str, type[Task]]:
    """Every loss name a config may use, with the task that owns it."""
    return dict(_REGISTRY)


def task_class(loss_name: str) -> type[Task]:
    """The task owning ``loss_name``; an error naming the valid loss names when none does."""
    if loss_name not in _REGISTRY:
        raise ValueError(f"unknown loss {loss_name!r}; valid names are {sorted(_REGISTRY)}")
    return _REGISTRY[loss_name]

