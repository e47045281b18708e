"""When a run saves checkpoints and which it keeps (latest-N, best-N by a logged metric, pinned steps)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from orbax.checkpoint import checkpoint_managers as policies


@dataclasses.dataclass(frozen=True)
class CheckpointPolicy:
    """When to save and what to keep.

    ``every_epochs`` (0: never at epoch ends) and ``every_steps`` (0: never mid-epoch) say when;
    ``keep_latest`` newest and ``keep_best`` best by ``best_metric`` (an epoch-row name such as
    ``"val_accuracy"``, or ``"auto"``: accuracy when logged, else loss; ``mode`` "min", "max" or "auto": min
    for losses and errors) are kept, plus whatever
    a caller pins (the early-stopping best). ``asynchronous`` writes in a background thread.
    """

    every_epochs: int = 1
    every_steps: int = 0
    keep_latest: int = 2
    keep_best: int = 1
    best_metric: str | None = None
    mode: str = "auto"
    asynchronous: bool = True

    def __post_init__(self) -> None:
        for name in ("every_epochs", "every_steps", "keep_best"):
            if getattr(self, name) < 0:
                raise ValueError(f"checkpoint.{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_latest < 1:
            raise ValueError(f"checkpoint.keep_latest must be >= 1 (resuming needs the newest), got {self.keep_latest}")
        if self.mode not in ("min", "max", "auto"):
            raise ValueError(f"checkpoint.mode must be 'min', 'max' or 'auto', got {self.mode!r}")

    @property
    def minimize(self) -> bool:
        """Whether smaller ``best_metric`` values are better."""
        if self.mode != "auto":
            return self.mode == "min"
        if self.best_metric == "auto":
            return False  # `Checkpointer._metric` turns a fallback loss into a score
        return any(word in (self.best_metric or "") for word in ("loss", "mae", "rmse", "error"))


@dataclasses.dataclass
class PinnedSteps(policies.PreservationPolicy):
    """Keeps the steps in ``steps`` (mutable: the early-stopping best moves as training goes)."""

    steps: set = dataclasses.field(default_factory=set)

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> Sequence[bool]:
        """Keep exactly the pinned steps (Orbax's preservation-policy protocol)."""
        return [info.step in self.steps for info in checkpoints]
