"""Batch normalisation as every jaxdl model uses it, synchronised across devices by the strategy, not the model.

Under the ``pmap`` strategy each device sees a slice of the global batch; `jaxdl.distributed.parallel` traces
the step inside `synchronized_batch_norm`, so every `batch_norm` layer averages its mean and variance over the
devices (synchronised BatchNorm): the statistics, and so the training, equal the single-device run. Models
carry no axis argument. Under ``jit`` over a mesh the batch is one global array and XLA computes the same
statistics without being told.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import flax.linen as nn

_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("jaxdl_batch_norm_axis", default=None)


@contextlib.contextmanager
def synchronized_batch_norm(axis_name: str | None) -> Iterator[None]:
    """Within the block, `batch_norm` layers traced average their statistics over the mapped axis ``axis_name``
    (None: each device's own batch)."""
    token = _AXIS.set(axis_name)
    try:
        yield
    finally:
        _AXIS.reset(token)


def batch_norm(train: bool, name: str | None = None, epsilon: float = 1e-5) -> nn.BatchNorm:
    """A BatchNorm layer (momentum 0.9, batch statistics in training, running averages otherwise), averaging its
    statistics over the axis of the innermost `synchronized_batch_norm` block; ``epsilon`` is added to the
    variance (pretrained networks need their own: 1e-3 for TensorFlow-trained ones)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, axis_name=_AXIS.get(), name=name)
