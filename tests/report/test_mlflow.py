"""The MLflow writer: a real MLflow client reads back the params, every interval and epoch metric, the run's
status, and a resumed run logging into the same MLflow run."""

import json
import pathlib

import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.data.base import ArrayDataset
from jaxdl.distributed.parallel import compile_eval_step, compile_train_step
from jaxdl.report.mlflow_logger import RUN_ID_FILE, MLflowLogger
from jaxdl.training.loop import fit
from tests.training.helpers import blobs, small_setup

mlflow = pytest.importorskip("mlflow")
ROOT = pathlib.Path(__file__).parents[2]


def _client(workdir):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(workdir / "mlruns").resolve().as_uri())


def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _fit(workdir, num_epochs, params=None):
    _, state, step, eval_step, _ = small_setup()
    return fit(state, train_step=compile_train_step(step), eval_step=compile_eval_step(eval_step),
               train_data=blobs(64), validation_data=blobs(20, seed=3), batch_size=16, num_epochs=num_epochs,
               progress=False, log_every=2, workdir=workdir,
               hooks=[MLflowLogger(experiment_name="blobs", run_name="r", params=params)])


def test_every_record_reaches_mlflow_and_a_resumed_run_continues_the_same_mlflow_run(tmp_path):
    params = {"optimizer.learning_rate": 0.01, "model.hidden_sizes": (8,)}
    first = _fit(tmp_path, 1, params)
    client = _client(tmp_path)
    run_id = (tmp_path / RUN_ID_FILE).read_text()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params == {k: str(v) for k, v in params.items()}
    second = _fit(tmp_path, 2, params)  # resumes from the first run's checkpoint
    assert (tmp_path / RUN_ID_FILE).read_text() == run_id
    experiment = client.get_experiment_by_name("blobs")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    rows = first.history + second.history[len(first.history):]
    for key in ("train_loss", "val_loss", "val_accuracy", "epoch_seconds"):
        assert _history(client, run_id, key) == [(row["step"], pytest.approx(row[key])) for row in rows]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    intervals = [r for r in records if r["kind"] == "train"]
    assert len({r["step"] for r in intervals}) > len(rows)  # log_every=2 gives several intervals an epoch
    for key in ("loss", "grad_norm", "examples_per_second"):
        assert _history(client, run_id, key) == [(r["step"], pytest.approx(r[key])) for r in intervals]


def test_a_nan_stop_marks_the_mlflow_run_failed_and_logs_no_nan(tmp_path):
    logger = MLflowLogger(tracking_uri=(tmp_path / "store").resolve().as_uri())
    _, state, step, eval_step, _ = small_setup()
    data = blobs(64)
    data.x[:] = np.nan  # the first step's loss stops the run
    with pytest.raises(FloatingPointError):
        fit(state, train_step=compile_train_step(step), eval_step=compile_eval_step(eval_step),
            train_data=ArrayDataset(data.x, data.y), batch_size=16, num_epochs=1, progress=False, log_every=1,
            hooks=[logger])
    assert logger.client.get_run(logger.run_id).info.status == "FAILED"
    assert _history(logger.client, logger.run_id, "loss") == []  # a NaN interval is never logged
    _, state, step, eval_step, _ = small_setup()  # the first fit's state was donated
    with pytest.raises(ValueError, match="tracking_uri"):
        fit(state, train_step=compile_train_step(step), eval_step=compile_eval_step(eval_step),
            train_data=blobs(64), batch_size=16, num_epochs=1, progress=False, hooks=[MLflowLogger()])


def test_train_mlflow_logs_the_experiment_config_as_params(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir),
                 "--config.data.train_limit=128", "--config.data.eval_limit=64", "--config.data.batch_size=64",
                 "--config.train.num_epochs=1", "--config.train.progress=False", "--config.train.strategy=jit",
                 "--config.train.mlflow=True"]) == 0
    client = _client(workdir)
    run = client.get_run((workdir / RUN_ID_FILE).read_text())
    config = json.loads((workdir / "config.json").read_text())
    assert run.data.params["optimizer.learning_rate"] == str(config["optimizer"]["learning_rate"])
    assert run.data.params["data.batch_size"] == "64" and "val_accuracy" in run.data.metrics
    assert client.get_experiment(run.info.experiment_id).name == config["name"]


def test_a_preempted_run_ends_killed_and_its_resumption_finishes_the_same_mlflow_run(tmp_path):
    import os
    import signal

    from jaxdl.training.preemption import Preempted

    _, state, step, eval_step, _ = small_setup()
    compiled, calls = compile_train_step(step), [0]

    def train_step(state, batch):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during step 3: the run saves it and stops
        return compiled(state, batch)

    with pytest.raises(Preempted):
        fit(state, train_step=train_step, eval_step=compile_eval_step(eval_step), train_data=blobs(64),
            batch_size=16, num_epochs=2, progress=False, workdir=tmp_path, hooks=[MLflowLogger()])
    client, run_id = _client(tmp_path), (tmp_path / RUN_ID_FILE).read_text()
    assert client.get_run(run_id).info.status == "KILLED"
    _fit(tmp_path, 2)
    assert (tmp_path / RUN_ID_FILE).read_text() == run_id and client.get_run(run_id).info.status == "FINISHED"
    assert max(step for step, _ in _history(client, run_id, "train_loss")) == 8  # 2 epochs of 4 steps
