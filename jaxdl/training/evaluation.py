"""Evaluation outside the train loop's steps: metrics over every example of a data set (last batch padded and
masked, so nothing is dropped and the eval step compiles once), and predictions in the data's order."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jaxdl.data.pipeline import ArrayDataset
from jaxdl.data.prefetch import prefetch
from jaxdl.distributed.parallel import Parallel
from jaxdl.metrics import Metrics
from jaxdl.training.state import TrainState

JIT = Parallel("jit")


def merge_metrics(a: Metrics | None, b: Metrics) -> Metrics:
    """``b`` merged into the running sums ``a`` (None: nothing yet)."""
    return b if a is None else a.merge(b)


merge_metrics_jit = jax.jit(merge_metrics)


def predict_in_order(predict: Callable[[Any], Any], data: ArrayDataset, batch_size: int, axis: int = 0) -> np.ndarray:
    """``predict(x)`` (compiled, inference mode) over every example of ``data`` in its order, padding dropped:
    the outputs concatenated along ``axis``, their example axis. A bucketed dataset is read as a plain one
    (bucketed evaluation visits examples shortest first)."""
    out = []
    for batch in ArrayDataset(data.x, data.y).eval_batches(batch_size):
        out.append(np.compress(batch["mask"], np.asarray(predict(batch["x"])), axis=axis))
    return np.concatenate(out, axis=axis)


def evaluate(state: TrainState, eval_step: Callable, data: ArrayDataset, batch_size: int,
             parallel: Parallel = JIT) -> dict[str, float]:
    """Metrics of ``state`` (placed by ``parallel``, which compiled ``eval_step``) on every example of
    ``data`` (last batch padded and masked, so nothing is dropped and the eval step compiles once). The batch
    size is rounded up to a multiple of the data-parallel devices: padding rows cost a little compute, never
    a result."""
    shares = parallel.data_parallel_size
    batch_size = -(-batch_size // shares) * shares
    total = None
    for batch in prefetch(data.eval_batches(batch_size, parallel.host_rows(batch_size)), parallel.put_batch):
        total = merge_metrics_jit(total, eval_step(state, batch)) if total is not None else eval_step(state, batch)
    if total is None:
        raise ValueError("cannot evaluate on an empty data set")
    return parallel.to_host(total).compute()


def scalar_metrics(values: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict as Python floats (what logs and summaries hold)."""
    return {k: float(v) for k, v in values.items() if np.ndim(v) == 0}
