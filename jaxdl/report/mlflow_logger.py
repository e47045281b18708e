"""MLflow tracking for a run: an optional sink, a `fit` hook writing to any MLflow tracking store.

By default the store is MLflow's local file store in ``WORKDIR/mlruns`` (``mlflow ui --backend-store-uri
WORKDIR/mlruns`` shows it); any tracking URI (``sqlite:///mlflow.db``, ``http://host:5000``) works too. MLflow
3.x keeps the file store only on request, so for a file store this sets ``MLFLOW_ALLOW_FILE_STORE=true``
unless the environment says otherwise. A run written into a work directory keeps its MLflow run id in
``WORKDIR/mlflow_run_id``: a resumed run goes on logging into the same MLflow run.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Mapping

from jaxdl.training.hooks import Hook, Loop
from jaxdl.util.atomic_file import write_text_atomically

RUN_ID_FILE = "mlflow_run_id"
_BATCH = 100  # MLflow's log_batch takes at most 100 params and 1000 metrics a call
_NOT_METRICS = frozenset({"kind", "step", "epoch"})


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def _numbers(record: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k not in _NOT_METRICS and k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}


class MLflowLogger(Hook):
    """Log ``params`` once when the MLflow run is created, every logging interval's record (loss, metrics,
    speed, norms, learning rate) at its step, every epoch's row (``train_loss``, ``val_accuracy``, ...) at the
    epoch's last step, and the run's end: FINISHED, KILLED after a preemption stop (resumable), FAILED
    otherwise. ``tracking_uri`` None means ``WORKDIR/mlruns``. Needs the ``mlflow`` extra."""

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "jaxdl", run_name: str | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient  # noqa: F401
        except ImportError as exc:
            raise ImportError("train.mlflow needs MLflow: pip install 'jaxdl[mlflow]'") from exc
        self.tracking_uri, self.experiment_name, self.run_name = tracking_uri, experiment_name, run_name
        self.params = dict(params or {})
        self.client: Any = None
        self.run_id: str | None = None
        self.interval_keys: set[str] = set()
        self.preempted = False

    def on_fit_start(self, loop: Loop) -> None:
        """Open the tracking store and create the run, or reopen the one this work directory logged to."""
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri
        if uri is None:
            if loop.workdir is None:
                raise ValueError("MLflowLogger without a tracking_uri writes to WORKDIR/mlruns: give fit a workdir "
                                 "or the logger a tracking_uri")
            uri = (pathlib.Path(loop.workdir) / "mlruns").resolve().as_uri()
        if _is_file_store(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        id_file = pathlib.Path(loop.workdir) / RUN_ID_FILE if loop.workdir is not None else None
        if id_file is not None and id_file.is_file() and loop.step > 0 and self._reopen(id_file.read_text().strip()):
            return
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.experiment_name)
        self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
        self._log_params()
        if id_file is not None:
            write_text_atomically(id_file, self.run_id)

    def _reopen(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:  # the store was moved or cleared: the resumed run starts a new MLflow run
            return False
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        return True

    def _log_params(self) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        params = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(self.params.items())]
        for start in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[start:start + _BATCH])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), _BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + _BATCH])

    def on_metrics(self, loop: Loop, record: dict[str, Any]) -> None:
        """The interval's numbers under their own names (``loss``, ``grad_norm``, ``examples_per_second``)."""
        values = _numbers(record)
        self.interval_keys.update(values)
        self._log(values, int(record["step"]))

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """The epoch's row, less what the interval at the same step already logged (the learning rate)."""
        self._log(_numbers(row, frozenset(self.interval_keys)), int(row.get("step", loop.step)))

    def on_preempt(self, loop: Loop, stop: Any, resume_at: dict[str, Any]) -> None:
        """Remember that the run stops to be resumed: it ends KILLED, not FAILED."""
        self.preempted = True

    def on_fit_end(self, loop: Loop) -> None:
        """Mark the run FINISHED."""
        self.client.set_terminated(self.run_id, status="FINISHED")

    def on_error(self, loop: Loop, error: BaseException) -> None:
        """Mark the run KILLED (a preemption stop) or FAILED; what was logged stays."""
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status="KILLED" if self.preempted else "FAILED")
