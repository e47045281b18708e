"""Work directories: one writer at a time, resumed only with the configuration they were trained with, untouched
by a run that fails its checks; bad arguments, files and disks give one-line errors."""

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from jaxdl import checkpoint
from jaxdl.cli import main
from jaxdl.tasks import get_task
from jaxdl.util.workdir_lock import LOCK_NAME

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENT = str(ROOT / "experiments" / "mnist_mlp.py")
TINY = ["--config.data.train_limit=256", "--config.data.eval_limit=100", "--config.data.batch_size=64",
        "--config.train.num_epochs=2", "--config.train.progress=False", "--config.train.strategy=jit",
        "--config.model.hidden_sizes=(16,)", "--config.optimizer.schedule=constant"]


def _train_command(workdir, *extra):
    return [sys.executable, "-m", "jaxdl.cli", "train", EXPERIMENT, "--workdir", str(workdir), *TINY, *extra]


def _files(workdir):
    """Every file under ``workdir`` but the lock, with its bytes."""
    return {p.relative_to(workdir): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file() and p.name != LOCK_NAME}


def test_a_second_run_on_a_busy_workdir_fails_at_once_naming_the_holder_and_the_first_is_a_lone_run(tmp_path):
    busy, alone = tmp_path / "busy", tmp_path / "alone"
    first = subprocess.Popen(_train_command(busy), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((busy / LOCK_NAME).is_file() and (busy / LOCK_NAME).read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # holds the lock for as long as the second run needs
    try:
        start = time.monotonic()
        second = subprocess.run(_train_command(busy, "--config.optimizer.learning_rate=0.5"), cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - start
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and elapsed < 5, (elapsed, second.stderr[-2000:])
    assert f"is in use by another run (host {os.uname().nodename}, PID {first.pid}, started" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    assert subprocess.run(_train_command(alone), cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    busy_params, alone_params = (checkpoint.restore_params(d / "checkpoints") for d in (busy, alone))
    np.testing.assert_equal(busy_params, alone_params)
    assert json.loads((busy / "config.json").read_text()) == json.loads((alone / "config.json").read_text())


def test_a_killed_holder_frees_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from jaxdl.util.workdir_lock import hold_workdir\n"
                               "with hold_workdir(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    from jaxdl.util.workdir_lock import WorkdirBusyError, hold_workdir
    with pytest.raises(WorkdirBusyError, match=f"PID {holder.pid}"), hold_workdir(tmp_path):
        pass
    holder.kill()
    holder.wait()
    with hold_workdir(tmp_path), hold_workdir(tmp_path):  # free again, and re-entrant within a process
        pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run") / "finished"
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY]) == 0
    return workdir


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_resuming_with_another_config_is_refused_by_key_and_changes_nothing(finished_run, tmp_path, capsys):
    workdir = _copy(finished_run, tmp_path)
    before = _files(workdir)
    capsys.readouterr()
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY, "--config.optimizer.learning_rate=0.5",
                 "--config.data.seed=7"]) == 2
    err = capsys.readouterr().err
    assert "data.seed (0 -> 7)" in err and "optimizer.learning_rate" in err and "would change the program" in err, err
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY, "--config.train.num_epochs=3"]) == 2
    assert "--allow-change train.num_epochs" in capsys.readouterr().err
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY, "--config.train.num_epochs=3",
                 "--allow-change", "optimizer.learning_rate"]) == 2
    assert "not ['optimizer.learning_rate']" in capsys.readouterr().err
    assert _files(workdir) == before  # nothing written by the refused runs
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY, "--config.train.progress=True"]) == 0  # cosmetic
    assert main(["train", EXPERIMENT, "--workdir", str(workdir), *TINY, "--config.train.num_epochs=3",
                 "--allow-change", "train.num_epochs"]) == 0
    assert json.loads((workdir / "summary.json").read_text())["epochs_run"] == 3
    assert json.loads((workdir / "config.json").read_text())["train"]["num_epochs"] == 3


def test_more_epochs_under_a_schedule_laid_out_over_the_epochs_is_refused(tmp_path, capsys):
    args = ["train", EXPERIMENT, "--workdir", str(tmp_path), *TINY[:-1], "--config.train.num_epochs=1"]
    assert main([*args, "--config.optimizer.schedule=cosine"]) == 0
    capsys.readouterr()
    assert main([*args[:-1], "--config.train.num_epochs=2", "--config.optimizer.schedule=cosine",
                 "--allow-change", "train.num_epochs"]) == 2
    assert "under the 'cosine' schedule" in capsys.readouterr().err


def test_evaluate_falls_back_from_a_damaged_returned_step_to_the_best_surviving_one(finished_run, tmp_path, capsys):
    from tests.checkpoint.test_checkpoint import _damage

    workdir = _copy(finished_run, tmp_path)
    returned = checkpoint.returned_step(workdir)
    assert returned is not None and len(checkpoint.Checkpointer(workdir / "checkpoints").steps()) >= 2
    _damage(workdir / "checkpoints" / str(returned), "flip")
    capsys.readouterr()
    with pytest.warns(UserWarning) as caught:
        assert main(["evaluate", str(workdir)]) == 0
    messages = [str(w.message) for w in caught]
    assert any(f"/{returned} is damaged and was skipped" in m for m in messages), messages
    assert any("restored the previous good checkpoint" in m for m in messages), messages
    assert np.isfinite(json.loads(capsys.readouterr().out)["test"]["loss"])


@pytest.mark.parametrize("override, message", [
    ("--config.data.batch_size=0", "config.data.batch_size must be a whole number >= 1, got 0"),
    ("--config.train.num_epochs=0", "config.train.num_epochs must be a whole number >= 1, got 0"),
    ("--config.data.eval_batch_size=-5", "config.data.eval_batch_size must be a whole number >= 1, got -5"),
])
def test_bad_counts_are_refused_before_anything_is_written(tmp_path, capsys, override, message):
    assert main(["train", EXPERIMENT, "--workdir", str(tmp_path / "w"), *TINY, override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists() or _files(tmp_path / "w") == {}


@pytest.mark.parametrize("label", [10, -1, 99])
def test_labels_outside_the_classes_are_refused_naming_the_example(label):
    task = get_task({"name": "softmax_cross_entropy"}, 10)
    labels = np.arange(40) % 10
    labels[17] = label
    with pytest.raises(ValueError, match=rf"train label {label} at index 17 is outside \[0, 10\)"):
        task.check_labels(labels, "train")
    task.check_labels(np.arange(40) % 10, "train")  # every label in range passes
    masks = np.zeros((2, 4, 4), np.int32)
    masks[1, 2, 3] = label
    with pytest.raises(ValueError, match=r"at index \(1, 2, 3\)"):
        get_task({"name": "dice"}, 10).check_labels(masks, "test")
    tokens = np.full((2, 5), -1)  # the sequence task's padding label is allowed
    get_task({"name": "sequence_cross_entropy", "ignore_label": -1}, 10).check_labels(tokens, "train")


def test_a_workdir_that_is_a_file_or_on_a_read_only_disk_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", EXPERIMENT, "--workdir", str(tmp_path / "file"), *TINY]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        assert main(["train", EXPERIMENT, "--workdir", str(mount / "run"), *TINY]) == 2
        assert "pass a --workdir on a writable disk" in capsys.readouterr().err


def test_a_full_disk_fails_in_seconds_with_the_good_steps_intact_and_resumes_exactly(tmp_path, capsys):
    alone = tmp_path / "alone"
    assert main(["train", EXPERIMENT, "--workdir", str(alone), *TINY]) == 0
    step_bytes = sum(f.stat().st_size for f in (alone / "checkpoints" / str(checkpoint.latest_step(alone / "checkpoints"))).rglob("*")
                     if f.is_file())
    with _tmpfs(tmp_path / "disk", f"size={step_bytes * 3 // 2}") as disk:
        start = time.monotonic()
        capsys.readouterr()
        with warnings.catch_warnings(record=True):  # a save still in flight fails too, and is warned about
            warnings.simplefilter("always")
            assert main(["train", EXPERIMENT, "--workdir", str(disk / "run"), *TINY]) == 2
        assert time.monotonic() - start < 60
        err = capsys.readouterr().err
        assert "No space left on device" in err and "Traceback" not in err, err
        survivors = checkpoint.Checkpointer(disk / "run" / "checkpoints").steps()
        subprocess.run(["mount", "-o", f"remount,size={step_bytes * 20}", str(disk)], check=True)
        assert main(["train", EXPERIMENT, "--workdir", str(disk / "run"), *TINY]) == 0
        np.testing.assert_equal(checkpoint.restore_params(disk / "run" / "checkpoints"),
                                checkpoint.restore_params(alone / "checkpoints"))
    assert len(survivors) <= 1


@contextlib.contextmanager
def _tmpfs(path, options):
    """A tmpfs mounted at ``path`` with ``options``; skips the test where mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
