"""Early stopping on any logged metric, with patience."""

from __future__ import annotations

import dataclasses
import math

AUTO = "auto"  # a monitor chosen from the first logs: see `auto_monitor`


def auto_monitor(logs: dict[str, float]) -> str:
    """``"val_accuracy"`` when the logs have it (classifiers, segmenters), else ``"val_loss"`` (regression,
    detection, GANs): what `fit` tracks when it is given no early stopping."""
    return "val_accuracy" if "val_accuracy" in logs else "val_loss"


@dataclasses.dataclass
class EarlyStopping:
    """Track ``monitor`` (e.g. ``"val_accuracy"``, ``"val_loss"``, or ``"auto"``: see `auto_monitor`) once per epoch.

    ``mode`` is ``"max"``, ``"min"`` or ``"auto"`` (min for names containing ``loss``, max otherwise); an epoch
    improves when it beats the best by more than ``min_delta``; training stops after ``patience`` epochs
    without improvement (``None``: never stop early, still remember the best epoch).
    """

    monitor: str = "val_accuracy"
    mode: str = "auto"
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    best_value: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def __post_init__(self) -> None:
        if self.monitor == AUTO:
            return  # resolved by the first `update`
        if self.mode == "auto":
            # Errors are minimised (loss, mae, rmse); rates such as accuracy or exact_match are maximised.
            self.mode = "min" if any(word in self.monitor for word in ("loss", "mae", "rmse", "error")) else "max"
        if self.mode not in ("min", "max"):
            raise ValueError(f"early_stopping.mode must be 'min', 'max' or 'auto', got {self.mode!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"early_stopping.patience must be >= 1 or None, got {self.patience}")

    def update(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record ``logs`` of ``epoch``; return True when this epoch is the new best."""
        if self.monitor == AUTO:
            self.adopt(auto_monitor(logs))
        if self.monitor not in logs:
            raise ValueError(f"early stopping monitors {self.monitor!r}, which is not logged; logged are {sorted(logs)}")
        value = float(logs[self.monitor])
        if math.isnan(value):
            improved = False
        elif self.best_value is None:
            improved = True
        elif self.mode == "max":
            improved = value > self.best_value + self.min_delta
        else:
            improved = value < self.best_value - self.min_delta
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def adopt(self, monitor: str) -> None:
        """Settle an ``"auto"`` tracker on ``monitor`` (its mode follows the name, as for ``mode="auto"``)."""
        self.monitor, self.mode = monitor, "auto"
        self.__post_init__()

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row failed to improve."""
        return self.patience is not None and self.bad_epochs >= self.patience
