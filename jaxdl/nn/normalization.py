"""Batch normalisation as every jaxdl model uses it.

``axis_name`` is None except under the ``pmap`` strategy, where `jaxdl.distributed.parallel` sets the models'
``batch_norm_axis`` so that each device normalises with the mean and variance of the whole global batch
(synchronised BatchNorm): the statistics, and so the training, equal the single-device run. Under ``jit``
over a mesh the batch is one global array and XLA computes the same statistics without being told.
"""

from __future__ import annotations

import flax.linen as nn


def batch_norm(train: bool, axis_name: str | None = None, name: str | None = None, epsilon: float = 1e-5) -> nn.BatchNorm:
    """A BatchNorm layer (momentum 0.9, batch statistics in training, running averages otherwise),
    averaging its statistics over the ``pmap`` axis ``axis_name`` when given; ``epsilon`` is added to the
    variance (pretrained networks need their own: 1e-3 for TensorFlow-trained ones)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, axis_name=axis_name, name=name)
