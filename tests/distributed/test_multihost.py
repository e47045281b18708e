"""A real two-process run on this machine: jax.distributed over localhost, gloo collectives on CPU."""

import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxdl.distributed.parallel import make_parallel
from tests.distributed.multihost_reference import train

ROOT = pathlib.Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_feeding_their_own_rows_train_like_one_process(tmp_path):
    coordinator = f"localhost:{_free_port()}"
    out = tmp_path / "params.npz"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.distributed.multihost_worker", coordinator, str(i), str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    try:
        logs = [p.communicate(timeout=240)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the two-process run did not finish in 240 s")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    multi = dict(np.load(out))
    single = train(make_parallel("jit"))
    assert multi.keys() == single.keys()
    for name in single:
        np.testing.assert_allclose(multi[name], single[name], rtol=2e-5, atol=2e-6, err_msg=name)


def test_sigterm_to_one_process_stops_both_at_one_step_with_that_step_saved(tmp_path):
    coordinator = f"localhost:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.distributed.preemption_worker", coordinator, str(i),
                               str(tmp_path), "7"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("the preempted two-process run did not stop within 240 s")
    stopped = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 143, err[-3000:]
        stopped.append(int(out.split()[-1]))
    # JAX's coordination service agrees on a step at or after the one that saw the signal (240 steps in all).
    assert stopped[0] == stopped[1] and 7 <= stopped[0] < 240
    from jaxdl import checkpoint

    assert checkpoint.latest_step(tmp_path / "checkpoints") == stopped[0]
