"""Regression and forecasting (``mse``): mean squared error, MAE and RMSE (also in the data's original units
when the data set scaled its targets), predictions over test-time views averaged as they are."""

from __future__ import annotations

from typing import Any

from jaxdl.losses import LossFn, mse
from jaxdl.metrics import MetricsFn, regression_metrics
from jaxdl.tasks.base import Task


class Regression(Task):
    """Squared error between outputs and real-valued targets of the same shape."""

    losses = ("mse",)
    test_time_combine = "mean"

    def loss(self) -> LossFn:
        """`mse` over all but the batch axis."""
        return mse

    def metrics(self) -> MetricsFn:
        """Loss, MAE and RMSE."""
        return regression_metrics()

    def model_defaults(self, sample: Any) -> dict[str, Any]:
        """Nothing: a regression model's output size is the target's, not a class count."""
        return {}
