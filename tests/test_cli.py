"""Smoke tests: every experiment trains on a tiny slice through the real CLI, and `evaluate` agrees."""

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxdl.cli import main
from jaxdl.data.images import FASHION_MNIST_DIR
from jaxdl.transfer.backbone import load_run_model

ROOT = pathlib.Path(__file__).parents[1]
TINY = ["--config.data.train_limit=256", "--config.data.eval_limit=200", "--config.data.batch_size=64",
        "--config.data.eval_batch_size=128",
        "--config.train.num_epochs=1", "--config.train.progress=False", "--config.train.strategy=jit"]


def _have_fashion() -> bool:
    return (pathlib.Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").is_file()


# Per experiment: extra overrides that shrink it, and the test-set size the tiny run must report.
SMALL_TEXT = ["--config.data.vocab_size=1000", "--config.data.max_length=64"]
EXPERIMENTS = {
    "mnist_cnn": ([], 200), "mnist_mlp": ([], 200), "fashion_cnn": ([], 200), "mnist_vit": ([], 200),
    "reviews_lstm": (SMALL_TEXT, 200), "reviews_transformer": (SMALL_TEXT, 200),
    "seq2seq_reverse": ([], 200), "gunpoint_rnn": (["--config.data.batch_size=8"], 150),
    "sunspots_lstm": (["--config.data.batch_size=16"], 40), "sunspots_gru": (["--config.data.batch_size=16"], 40),
    "fashion_augment": ([], 200), "overfitting": (["--config.data.batch_size=32"], 200),
    # The pretrained backbones frozen, their features computed once (fine-tuning is tested on small models).
    "fashion_transfer": (["--config.model.input_size=32", "--config.transfer.mode=feature_extraction",
                          "--config.transfer.cache_features=True", "--config.data.augment=()"], 200),
    "shapes_unet": (["--config.data.image_size=32", "--config.model.widths=(4, 8)"], 200),
    "digits_detect": (["--config.data.eval_batch_size=100", "--config.model.widths=(4, 4, 8)", "--config.model.head_width=8"], 200),
    "reviews_minilm": (["--config.data.max_length=32", "--config.data.train_limit=64", "--config.data.eval_limit=32",
                        "--config.data.batch_size=32", "--config.transfer.mode=feature_extraction",
                        "--config.transfer.cache_features=True"], 32),
}
# Experiments whose job is `jaxdl tune`: smoke-tested through that command below.
TUNED = {"digits_kfold": ["--config.search.k=3"], "mnist_search": ["--config.search.trials=3"]}


# The `evaluate` round trip (restore the checkpoint, rebuild data and steps, same test loss) for one experiment
# of each kind of input and restore path; the others stop after training to keep the suite under 15 minutes.
EVALUATED = {"mnist_cnn", "reviews_lstm", "seq2seq_reverse", "sunspots_lstm", "fashion_transfer", "gunpoint_rnn"}
# Experiments that transfer from another experiment's run: the pair is smoke-tested together below.
CHAINED = {"digits_pretrain", "digits_transfer", "mnist_gan"}


def test_every_experiment_file_is_smoke_tested():
    assert {p.stem for p in (ROOT / "experiments").glob("*.py")} == set(EXPERIMENTS) | set(TUNED) | CHAINED


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_trains_on_a_tiny_slice_and_evaluates(experiment, tmp_path, capsys):
    if experiment.startswith("fashion") and not _have_fashion():
        pytest.skip("Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")
    extra, test_count = EXPERIMENTS[experiment]
    workdir = tmp_path / experiment
    assert main(["train", str(ROOT / "experiments" / f"{experiment}.py"), "--workdir", str(workdir), *TINY, *extra]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["test"]["count"] == test_count and np.isfinite(summary["test"]["loss"])
    for name in ("metrics.jsonl", "learning_curves.png", "config.json"):
        assert (workdir / name).is_file()
    # Dense tasks: their own score and picture (mean IoU is a test metric; mAP is computed after training).
    for name, picture in (("shapes_unet", "segmentation.png"), ("digits_detect", "detections.png")):
        if experiment == name:
            assert (workdir / picture).is_file()
    if experiment == "digits_detect":
        assert 0.0 <= summary["test"]["map50"] <= 1.0
    if experiment == "shapes_unet":
        assert 0.0 <= summary["test"]["mean_iou"] <= 1.0
    if "train_eval" in summary:  # the training split evaluated in inference mode, beside the validation gap
        assert summary["train_eval"]["count"] == 256 and "accuracy" in summary["train_validation_gap"]
    report_path = workdir / "classification_report.json"
    if report_path.is_file():  # predictions saved for the report agree with the evaluated test metrics
        assert json.loads(report_path.read_text())["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
        (workdir / "confusion_matrix.png").unlink()
        assert main(["report", str(workdir)]) == 0 and (workdir / "confusion_matrix.png").is_file()
    if experiment in EVALUATED:
        capsys.readouterr()
        assert main(["evaluate", str(workdir)]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        # The restored checkpoint (and, for text, the saved tokenizer) reproduce the run's own test metrics.
        assert evaluated["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)


def test_the_cli_trains_over_a_mesh_of_8_devices_in_bfloat16_with_accumulation(tmp_path, capsys):
    workdir = tmp_path / "mesh"
    args = ["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir), *TINY,
            "--config.train.strategy=mesh", "--config.train.precision=bfloat16", "--config.train.accumulation_steps=2",
            "--config.train.sharding_rules=(('Dense_0/kernel', (None, 'model')),)", "--config.train.mesh_shape=(4, 2)"]
    assert main(args) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["machine"]["strategy"] == "mesh" and summary["machine"]["precision"] == "bfloat16"
    assert summary["test"]["count"] == 200 and np.isfinite(summary["test"]["loss"])
    capsys.readouterr()
    assert main(["evaluate", str(workdir)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)


@pytest.mark.parametrize("experiment", sorted(TUNED))
def test_tune_experiments_search_or_cross_validate_on_a_tiny_slice(experiment, tmp_path, capsys):
    workdir, extra = tmp_path / experiment, TUNED[experiment]
    assert main(["tune", str(ROOT / "experiments" / f"{experiment}.py"), "--workdir", str(workdir), *TINY, *extra]) == 0
    summary = json.loads((workdir / "tune.json").read_text())
    if experiment == "digits_kfold":
        assert summary["k"] == 3 and len(summary["folds"]) == 3 and 0 <= summary["mean"]["accuracy"] <= 1
    else:
        assert summary["trials"] == 3 and (workdir / "search.csv").is_file() and (workdir / "search.png").is_file()


def test_cli_tune_flags_override_the_config_search(tmp_path, capsys):
    workdir = tmp_path / "grid"
    assert main(["tune", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir), *TINY,
                 "--grid", "optimizer.learning_rate=1e-3,1e-2", "--grid", "model.dropout_rate=0.0,0.1",
                 "--config.search.schedule=sequential"]) == 0
    summary = json.loads((workdir / "tune.json").read_text())
    assert summary["trials"] == 4 and summary["schedule_per_group"] == ["sequential", "sequential"]
    assert main(["tune", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(workdir), *TINY,
                 "--grid", "optimizer.learning_rat=1e-3"]) == 2
    assert "config has no field 'optimizer.learning_rat'" in capsys.readouterr().err


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


def test_digits_transfer_restores_the_pretraining_run_as_its_backbone(tmp_path, capsys):
    pretrain, transfer = tmp_path / "pretrain", tmp_path / "transfer"
    assert main(["train", str(ROOT / "experiments" / "digits_pretrain.py"), "--workdir", str(pretrain), *TINY]) == 0
    assert main(["train", str(ROOT / "experiments" / "digits_transfer.py"), "--workdir", str(transfer), *TINY,
                 f"--config.transfer.workdir={pretrain}", "--config.data.train_limit=100"]) == 0
    summary = json.loads((transfer / "summary.json").read_text())
    assert summary["transfer"]["backbone"] == str(pretrain) and summary["transfer"]["restored"]
    # The old 5-way output layer is left behind by name, not silently.
    assert summary["transfer"]["dropped_from_source"] == ["params/DenseHead_0/Dense_1/bias", "params/DenseHead_0/Dense_1/kernel"]
    # Stage 2 from the transfer run: its backbone and head go on, only the top block of the backbone trains.
    stage2 = tmp_path / "stage2"
    assert main(["train", str(ROOT / "experiments" / "digits_transfer.py"), "--workdir", str(stage2), *TINY,
                 f"--config.transfer.workdir={transfer}", "--config.transfer.mode=train_top", "--config.transfer.top_blocks=1",
                 "--config.data.train_limit=100", "--config.optimizer.schedule=constant"]) == 0
    second = json.loads((stage2 / "summary.json").read_text())["transfer"]
    assert second["head"] == "restored from the source run" and second["dropped_from_source"] == []
    first_params, second_params = (load_run_model(run)[1]["params"]["backbone"] for run in (transfer, stage2))
    blocks = sorted(k for k in first_params if k.startswith("ConvBlock_"))
    for block in blocks:
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first_params[block]),
                                                        jax.tree.leaves(second_params[block])))
        assert same == (block != blocks[-1]), block
    capsys.readouterr()
    assert main(["evaluate", str(stage2)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["loss"] == pytest.approx(
        json.loads((stage2 / "summary.json").read_text())["test"]["loss"], rel=1e-5)
    assert main(["train", str(ROOT / "experiments" / "digits_transfer.py"), "--workdir", str(tmp_path / "x"), *TINY,
                 f"--config.transfer.workdir={tmp_path / 'nothing'}"]) == 2
    assert "jaxdl train experiments/digits_pretrain.py" in capsys.readouterr().err


def test_train_resumes_a_workdir_and_pretrained_lists_the_zoo(tmp_path, capsys):
    args = ["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(tmp_path), *TINY]
    assert main(args) == 0
    first = json.loads((tmp_path / "summary.json").read_text())
    assert main([*args, "--resume"]) == 0  # nothing left to train: the finished run is restored as it was
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["test"] == first["test"] and again["epochs_run"] == first["epochs_run"]
    assert main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(tmp_path / "new"), *TINY,
                 "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["pretrained", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("minilm-l6", "efficientnet-lite0", "mobilenet-v2"))
    assert main(["pretrained", "import", "resnet9000"]) == 2
    assert "known ones are" in capsys.readouterr().err


def test_mnist_gan_draws_sample_sheets_and_is_judged_by_a_classifier_run(tmp_path, capsys):
    judge, gan = tmp_path / "judge", tmp_path / "gan"
    assert main(["train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir", str(judge), *TINY,
                 "--config.model.hidden_sizes=(16,)"]) == 0
    assert main(["train", str(ROOT / "experiments" / "mnist_gan.py"), "--workdir", str(gan), *TINY,
                 "--config.model.width=8", "--config.model.latent_dim=8", f"--config.train.judge_workdir={judge}"]) == 0
    summary = json.loads((gan / "summary.json").read_text())
    assert np.isfinite(summary["test"]["d_loss"]) and np.isfinite(summary["test"]["g_loss"])
    assert (gan / "samples" / "epoch_001.png").is_file() and (gan / "samples.png").is_file()
    samples = summary["samples"]
    assert samples["samples"] == 1000 and 0.0 <= samples["confident_fraction"] <= 1.0
    assert len(samples["class_shares"]) == 10
    # Shares are over the confidently classified samples: they sum to 1 unless there are none.
    assert sum(samples["class_shares"]) == pytest.approx(1.0 if samples["confident_fraction"] else 0.0, abs=1e-3)
    # The judge also ran after every epoch; the run returns its last generator, so the verdicts agree.
    verdicts = [json.loads(line) for line in (gan / "samples" / "judge.jsonl").read_text().splitlines()]
    assert [v["epoch"] for v in verdicts] == [1] and verdicts[-1]["class_shares"] == samples["class_shares"]
    assert main(["train", str(ROOT / "experiments" / "mnist_gan.py"), "--workdir", str(tmp_path / "y"), *TINY,
                 "--config.loss.label_smoothing=0.5"]) == 2
    assert "must lie in [0, 0.5)" in capsys.readouterr().err
    assert main(["train", str(ROOT / "experiments" / "mnist_gan.py"), "--workdir", str(tmp_path / "x"), *TINY,
                 "--config.model.name=mlp"]) == 2
    assert "needs model.name='gan'" in capsys.readouterr().err
