"""A small training run that can kill itself (SIGKILL) at a chosen step or right after a chosen checkpoint save
starts, or send itself signals during a chosen step, for the resume tests. ``python -m tests.checkpoint.resume_worker
WORKDIR [step:N | save:N | raise:N | SIGTERM:N | SIGINT:N | SIGTERM*2:N]`` trains (resuming whatever WORKDIR holds) and writes
the final parameters to WORKDIR/final.npz; a run stopped by a signal exits with `Preempted.exit_status`."""

import os
import signal
import sys

import jax
import numpy as np

from jaxdl.checkpoint import Checkpointer, CheckpointPolicy
from jaxdl.distributed.parallel import compile_eval_step, compile_train_step
from jaxdl.training.early_stopping import EarlyStopping
from jaxdl.training.loop import fit
from jaxdl.training.preemption import Preempted
from tests.training.helpers import blobs, bn_convnet, small_setup

EPOCHS, BATCH = 4, 16
POLICY = CheckpointPolicy(every_steps=2, keep_latest=2, keep_best=1, best_metric="val_loss")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run(workdir: str, kill: str | None = None, policy: CheckpointPolicy = POLICY,
        early_stopping: EarlyStopping | None = None):
    """Train a BatchNorm + dropout ConvNet on blobs for `EPOCHS` (6 steps each) into ``workdir``."""
    _, state, step, eval_step, schedule = small_setup(bn_convnet())
    train_step = compile_train_step(step)
    what, _, at = (kill or "").partition(":")
    if what.startswith("SIG") or what in ("step", "raise"):
        name, _, times = what.partition("*")
        calls, compiled = [0], train_step

        def train_step(state, batch):  # noqa: F811 (interrupted as `kill` says when step `at` is about to run)
            calls[0] += 1
            if calls[0] == int(at):
                if what == "raise":  # a crash inside the process
                    raise KeyboardInterrupt
                if what == "step":
                    jax.block_until_ready(state)
                    _die()
                for _ in range(int(times or 1)):  # the signal arrives while the step runs (twice: an impatient operator)
                    os.kill(os.getpid(), signal.Signals[name])
            return compiled(state, batch)
    if what == "save":
        saves, original = [0], Checkpointer.save

        def save(self, *args, **kwargs):  # dies while the background write of save `at` is running
            original(self, *args, **kwargs)
            saves[0] += 1
            if saves[0] == int(at):
                _die()

        Checkpointer.save = save
    return fit(state, train_step=train_step, eval_step=compile_eval_step(eval_step), train_data=blobs(100),
               validation_data=blobs(40, seed=5), batch_size=BATCH, num_epochs=EPOCHS, seed=3, workdir=workdir,
               log_every=4, schedule=schedule, progress=False, checkpoint_policy=policy,
               early_stopping=early_stopping or EarlyStopping("val_loss", patience=None, restore_best=False))


if __name__ == "__main__":
    try:
        result = run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    except Preempted as stop:  # as `jaxdl train` ends after a saved stop (see jaxdl.cli.entry)
        sys.stdout.flush()
        os._exit(stop.exit_status)
    leaves = jax.tree.leaves(jax.device_get((result.state.params, result.state.batch_stats, result.state.opt_state)))
    np.savez(os.path.join(sys.argv[1], "final.npz"), *leaves)
