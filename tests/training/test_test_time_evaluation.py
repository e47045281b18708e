"""`data.test_time_augment` in a run: the summary both ways, `evaluate` reproducing each, predictions, errors."""

import json
import re

import jax
import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.data.test_time import make_test_time_augmentation
from jaxdl.distributed.parallel import make_parallel
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import classification_metrics
from jaxdl.report.classification import PREDICTIONS
from jaxdl.training.evaluation import evaluate
from jaxdl.training.optimizers import make_optimizer
from jaxdl.training.state import create_train_state
from jaxdl.training.step import make_eval_step
from tests.test_cli import ROOT, TINY
from tests.training.helpers import blobs, bn_convnet

VIEWS = '--config.data.test_time_augment=("horizontal_flip", "shifts")'


def test_a_run_reports_single_view_and_averaged_metrics_and_evaluate_reproduces_both(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", str(ROOT / "experiments" / "mnist_cnn.py"), "--workdir", str(workdir), *TINY, VIEWS]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test_time_augment"] == ["horizontal_flip", "shifts"]
    single, averaged = summary["single_view"]["test"], summary["test"]
    assert single["count"] == averaged["count"] == 200
    assert single["loss"] != averaged["loss"]  # ten views of a barely trained CNN do not agree with one
    capsys.readouterr()
    assert main(["evaluate", str(workdir)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["loss"] == pytest.approx(averaged["loss"], rel=1e-5)
    assert again["validation"]["accuracy"] == pytest.approx(summary["validation"]["accuracy"])
    assert main(["evaluate", str(workdir), "--config.data.test_time_augment=()"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["loss"] == pytest.approx(single["loss"], rel=1e-5)
    predictions = np.load(workdir / PREDICTIONS)
    assert np.mean(predictions["y_true"] == predictions["y_pred"]) == pytest.approx(averaged["accuracy"])


def test_evaluate_changes_only_how_a_model_is_evaluated(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir), *TINY]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(workdir), "--config.optimizer.learning_rate=1.0"]) == 2
    assert "data.test_time_augment" in capsys.readouterr().err
    assert main(["evaluate", str(workdir), '--config.data.test_time_augment=("spin",)']) == 2
    assert "unknown test-time augmentation 'spin'" in capsys.readouterr().err


@pytest.mark.parametrize("experiment, extra, message", [
    ("sunspots_lstm", ["--config.data.batch_size=16"], r"needs image inputs \[batch, height, width, channels\]"),
    ("shapes_unet", ["--config.data.image_size=32", "--config.model.widths=(4, 8)"], "one prediction per image"),
    ("mnist_gan", [], "averages one prediction per image; loss 'gan' gives none"),
])
def test_inputs_or_outputs_that_views_cannot_average_fail_before_training(tmp_path, capsys, experiment, extra, message):
    assert main(["train", str(ROOT / "experiments" / f"{experiment}.py"), "--workdir", str(tmp_path / "run"), *TINY,
                 *extra, VIEWS]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("strategy", ["pmap", "mesh"])
def test_averaged_evaluation_on_eight_devices_equals_the_single_device_one(strategy):
    """The views' scan runs inside each device's share of the batch: metrics summed over devices are the
    single-device metrics."""
    model = bn_convnet()
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-2}, 10, 3)
    state = create_train_state(model, tx, np.zeros((1, 4, 4, 1), np.float32), 0)
    data = blobs(64, seed=3)
    test_time = make_test_time_augmentation(("horizontal_flip", "shifts"))
    results = {}
    for name in ("jit", strategy):
        parallel = make_parallel(name)
        step = make_eval_step(model, softmax_cross_entropy, classification_metrics(3),
                              axis_name=parallel.axis_name, test_time=test_time)
        results[name] = evaluate(parallel.put_state(state), parallel.compile_eval_step(step), data, 64, parallel)
    single = evaluate(state, jax.jit(make_eval_step(model, softmax_cross_entropy, classification_metrics(3))), data, 64)
    assert results[strategy]["count"] == 64 and results["jit"]["loss"] != pytest.approx(single["loss"], rel=1e-4)
    for key in ("loss", "accuracy"):
        assert results[strategy][key] == pytest.approx(results["jit"][key], rel=1e-5)
