"""Hooks on the training loop: the protocol (`Hook`, `Loop`) and the built-in ones `fit` assembles.

`MetricsLog` (metrics.jsonl), `ProgressBar`, `EarlyStop`, `SaveCheckpoints` and `EpochCallback` (a plain
``(epoch, row, state)`` function) are each one file; figures and TensorBoard are hooks in `jaxdl.report`.
"""

from jaxdl.training.hooks.base import Hook, Loop
from jaxdl.training.hooks.checkpointing import SaveCheckpoints
from jaxdl.training.hooks.early_stopping import EarlyStop
from jaxdl.training.hooks.epoch_callback import EpochCallback, as_hook
from jaxdl.training.hooks.metrics_log import MetricsLog
from jaxdl.training.hooks.profile import ProfileSteps
from jaxdl.training.hooks.progress import SHOWN_METRICS, ProgressBar
from jaxdl.training.hooks.throughput import Throughput

__all__ = ["SHOWN_METRICS", "EarlyStop", "EpochCallback", "Hook", "Loop", "MetricsLog", "ProfileSteps", "ProgressBar",
           "SaveCheckpoints", "Throughput", "as_hook"]
