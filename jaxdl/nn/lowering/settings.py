"""The one setting that says how jaxdl's convolutions are lowered, read by every layer when it is traced.

``mode`` is ``"auto"`` (XLA's own operations on GPU and TPU; on a CPU the lowering measured fastest for each
use, or a fixed rule where nothing was measured), ``"xla"`` (XLA's own operations everywhere) or
``"patches"`` (jaxdl's CPU lowerings everywhere: patches convolutions, shifted-view depthwise sums,
stride-phase transposed convolutions) or ``"onednn"`` (oneDNN's CPU kernels wherever they apply, the fixed rule
elsewhere; `jaxdl.nn.lowering.onednn`). ``measure`` lets ``"auto"`` time the candidates on a CPU before a
step is compiled (`jaxdl.nn.lowering.tune`); off, the fixed rule decides, the same on every run. The setting
applies when a function is traced: a program already compiled keeps the lowering it was traced with.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Iterator

MODES = ("auto", "xla", "patches", "onednn")


@dataclasses.dataclass(frozen=True)
class LoweringSettings:
    """How convolutions lower (``mode``, one of `MODES`) and whether ``"auto"`` may measure on a CPU."""

    mode: str = "auto"
    measure: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown convolution lowering {self.mode!r}; valid ones are {list(MODES)}")


_PROCESS = [LoweringSettings()]  # what `configure` set: seen by every thread
# What a `use` block set: seen only inside it (and by what it traces), in this thread or task.
_BLOCK: contextvars.ContextVar[LoweringSettings | None] = contextvars.ContextVar("jaxdl_lowering", default=None)


def current() -> LoweringSettings:
    """The settings in force here: the innermost `use` block's, else the last `configure`'s."""
    return _BLOCK.get() or _PROCESS[0]


def configure(mode: str | None = None, measure: bool | None = None) -> LoweringSettings:
    """Set the lowering for the rest of this process; unset arguments keep their value. Returns the previous
    settings (pass their fields back to restore them)."""
    previous = _PROCESS[0]
    _PROCESS[0] = LoweringSettings(previous.mode if mode is None else mode,
                                   previous.measure if measure is None else bool(measure))
    return previous


@contextlib.contextmanager
def use(mode: str | None = None, measure: bool | None = None) -> Iterator[LoweringSettings]:
    """Within the block, trace convolutions with ``mode`` (and ``measure``); restored afterwards."""
    outer = current()
    token = _BLOCK.set(LoweringSettings(outer.mode if mode is None else mode,
                                        outer.measure if measure is None else bool(measure)))
    try:
        yield current()
    finally:
        _BLOCK.reset(token)
