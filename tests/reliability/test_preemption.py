"""Preemption: SIGTERM/SIGINT stop a run after the step they arrive in, with that step saved and the stop
recorded; the resumed run is bitwise the uninterrupted one; a second signal ends the process at once."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxdl import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _worker(workdir, *args):
    return subprocess.run([sys.executable, "-m", "tests.checkpoint.resume_worker", str(workdir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    assert _worker(workdir).returncode == 0
    return workdir


def _records(workdir, kind):
    return [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.parametrize("name, at", [("SIGTERM", 9), ("SIGINT", 15), ("SIGTERM", 12)])
def test_a_signal_saves_the_step_it_arrived_in_and_the_resumed_run_is_bitwise_the_uninterrupted_one(
        tmp_path, uninterrupted, name, at):
    # Step 12 ends epoch 2: the stop then waits for the epoch's evaluation and its own checkpoint.
    stopped = _worker(tmp_path, f"{name}:{at}")
    assert stopped.returncode == 128 + signal.Signals[name], stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr, stopped.stderr[-3000:]
    assert checkpoint.latest_step(tmp_path / "checkpoints") == at
    epoch, batch = divmod(at - 1, 6)
    expected = {"signal": name, "step": at, "epoch": epoch + 1, "batch": batch + 1}
    assert _records(tmp_path, "preempted") == [{"kind": "preempted", **expected}]
    assert json.loads((tmp_path / "summary.json").read_text())["preempted"] == expected
    finished = _worker(tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    final, reference = np.load(tmp_path / "final.npz"), np.load(uninterrupted / "final.npz")
    assert final.files == reference.files
    for key in reference.files:
        np.testing.assert_array_equal(final[key], reference[key])
    # The log holds each interval once, and one more record: the interval that ended at the stop.
    reference_steps = [r["step"] for r in _records(uninterrupted, "train")]
    assert [r["step"] for r in _records(tmp_path, "train")] == sorted(set(reference_steps) | {at})
    assert ([r["val_loss"] for r in _records(tmp_path, "epoch")] == [r["val_loss"] for r in _records(uninterrupted, "epoch")])


def test_a_second_signal_ends_the_process_at_once_and_leaves_no_half_written_step(tmp_path):
    stopped = _worker(tmp_path, "SIGTERM*2:9")
    assert stopped.returncode == -signal.SIGTERM, stopped.stderr[-3000:]
    steps = checkpoint.Checkpointer(tmp_path / "checkpoints").steps()
    assert steps and max(steps) < 9  # step 9 was not waited for; what is listed is complete and restores
    assert _worker(tmp_path).returncode == 0


def test_sigterm_to_jaxdl_train_exits_143_after_saving_and_the_same_command_resumes(tmp_path):
    args = [sys.executable, "-m", "jaxdl.cli", "train", str(ROOT / "experiments" / "mnist_mlp.py"), "--workdir",
            str(tmp_path), "--config.data.train_limit=256", "--config.data.eval_limit=100", "--config.data.batch_size=8",
            "--config.train.num_epochs=3", "--config.train.progress=False", "--config.train.log_every=1",
            "--config.train.strategy=jit", "--config.model.hidden_sizes=(16,)"]
    run = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-3000:]
    assert "jaxdl: stopped by SIGTERM at step" in err and "Traceback" not in err, err[-3000:]
    stop = json.loads((tmp_path / "summary.json").read_text())["preempted"]
    assert checkpoint.latest_step(tmp_path / "checkpoints") == stop["step"] < 96
    resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "preempted" not in summary and summary["epochs_run"] == 3
    assert checkpoint.latest_step(tmp_path / "checkpoints") == 96
