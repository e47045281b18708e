"""Smoke tests: every experiment trains on a tiny slice through the real CLI, and `evaluate` agrees."""

import json
import pathlib

import pytest

from jaxdl.cli import main
from jaxdl.data.datasets import FASHION_MNIST_DIR

ROOT = pathlib.Path(__file__).parents[1]
TINY = ["--config.data.train_limit=256", "--config.data.eval_limit=200", "--config.data.batch_size=64",
        "--config.train.num_epochs=1", "--config.train.progress=False"]


def _have_fashion() -> bool:
    return (pathlib.Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").is_file()


@pytest.mark.parametrize("experiment", ["mnist_cnn", "mnist_mlp", "fashion_cnn"])
def test_experiment_trains_on_a_tiny_slice_and_evaluates(experiment, tmp_path, capsys):
    if experiment.startswith("fashion") and not _have_fashion():
        pytest.skip("Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")
    workdir = tmp_path / experiment
    assert main(["train", str(ROOT / "experiments" / f"{experiment}.py"), "--workdir", str(workdir), *TINY]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test"]["count"] == 200 and 0.0 <= summary["test"]["accuracy"] <= 1.0
    for name in ("metrics.jsonl", "learning_curves.png", "config.json"):
        assert (workdir / name).is_file()
    capsys.readouterr()
    assert main(["evaluate", str(workdir)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])


def test_cli_reports_bad_config_with_exit_code_2(tmp_path, capsys):
    code = main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(tmp_path),
                 "--config.model.name=transformer9000"])
    assert code == 2
    assert "valid names are" in capsys.readouterr().err
    assert main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(tmp_path),
                 "--config.optimizer.learning_rate=0"]) == 2
    assert "learning_rate must be > 0" in capsys.readouterr().err


def test_evaluate_on_a_directory_without_a_run_is_explained(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
