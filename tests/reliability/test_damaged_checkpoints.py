"""Damaged checkpoints are recovered from: set aside with one warning line, resumed past bitwise equal to an
uninterrupted run, evaluated from the best surviving step, never returned unverified."""

import pathlib
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdl import checkpoint
from jaxdl.checkpoint import Checkpointer, CheckpointPolicy, CorruptCheckpointError
from jaxdl.training.early_stopping import EarlyStopping
from tests.checkpoint import resume_worker
from tests.checkpoint.test_checkpoint import _damage

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _leaves(result):
    return jax.tree.leaves(jax.device_get((result.state.params, result.state.batch_stats, result.state.opt_state)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return resume_worker.run(str(tmp_path_factory.mktemp("uninterrupted")))


def _crash_before(workdir, step, **run_kwargs):
    """Run the resume worker into ``workdir`` and stop it (as a crash would) before training step ``step``."""
    with pytest.raises(KeyboardInterrupt):
        resume_worker.run(str(workdir), f"raise:{step}", **run_kwargs)


@pytest.mark.parametrize("how", ["truncate", "flip", "loop"])
def test_a_damaged_newest_step_is_set_aside_and_the_resumed_run_equals_the_uninterrupted_one(tmp_path, uninterrupted, how):
    # Stopped before step 13: steps 10 and 12 survive; 12 ends epoch 2 and is the best so far, and step 10's own
    # record points at the best step before it (6), which the keep-best policy has deleted since.
    _crash_before(tmp_path, 13)
    directory = tmp_path / "checkpoints"
    assert Checkpointer(directory).steps() == [10, 12]
    _damage(directory / "12", how)
    unraisable = []
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        resumed, messages = _with_warnings(resume_worker.run, str(tmp_path))
        time.sleep(0.2)  # the orphaned reads of the damaged step report within milliseconds
    finally:
        sys.unraisablehook = previous_hook
    assert [m for m in messages if "is damaged" in m] == [m for m in messages if "/12 is damaged and was moved to" in m]
    assert len([m for m in messages if "is damaged" in m]) == 1 and all("\n" not in m for m in messages), messages
    assert unraisable == []
    assert (directory / "damaged" / "12").is_dir()
    for got, want in zip(_leaves(resumed), _leaves(uninterrupted), strict=True):
        np.testing.assert_array_equal(got, want)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in uninterrupted.history], (resumed.history, uninterrupted.history, messages)
    # A plain restore (for inference, say) only reads: a damaged step is skipped and left where it is.
    newest = Checkpointer(directory).latest_step()
    _damage(directory / str(newest), how)
    messages = _with_warnings(checkpoint.restore_checkpoint, directory, resumed.state)[1]
    assert any(f"/{newest} is damaged and was skipped" in m for m in messages), messages
    assert (directory / str(newest)).is_dir()
    assert sorted(p.name for p in (directory / "damaged").iterdir()) == ["12"]


def test_a_damaged_best_step_gives_way_to_the_best_surviving_epoch(tmp_path):
    # "Best" is the highest training loss, so epoch 1 (step 6) stays best and pinned while later epochs are saved.
    policy = CheckpointPolicy(every_epochs=1, keep_latest=2, keep_best=0)

    def tracker():
        return EarlyStopping("train_loss", mode="max", patience=None, restore_best=True)

    _crash_before(tmp_path, 20, policy=policy, early_stopping=tracker())
    directory = tmp_path / "checkpoints"
    assert Checkpointer(directory).steps() == [6, 12, 18]
    _damage(directory / "6", "flip")
    with Checkpointer(directory) as checkpointer:
        epoch_2 = checkpointer.restore(resume_worker.small_setup(resume_worker.bn_convnet())[1], 12)[0]
    resumed, messages = _with_warnings(resume_worker.run, str(tmp_path), policy=policy, early_stopping=tracker())
    assert any("best epoch's checkpoint (step 6) is lost; the best surviving one, epoch 2 (step 12" in m
               for m in messages), messages
    assert resumed.summary["best_epoch"] == 2 and resumed.summary["checkpoint_step"] == 12
    for got, want in zip(jax.tree.leaves(jax.device_get(resumed.state.params)),
                         jax.tree.leaves(jax.device_get(epoch_2.params)), strict=True):
        np.testing.assert_array_equal(got, want)
    assert 12 in Checkpointer(directory).steps()  # pinned as the best from then on


def _tree(offset):
    offset = float(offset)
    return {"params": {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3) + offset}}, "step": jnp.int32(offset)}


def test_params_and_subtrees_are_verified_like_whole_states(tmp_path):
    with Checkpointer(tmp_path, CheckpointPolicy(keep_latest=3, asynchronous=False)) as checkpointer:
        checkpointer.save(1, _tree(1))
        # Step 2's arrays are valid files holding other values than its fingerprints: only a verified read sees it.
        checkpointer._manager.save(2, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_tree(2)), loop=ocp.args.JsonSave({"fingerprints": checkpoint.fingerprints(_tree(9))})),
            force=True)
    params, messages = _with_warnings(checkpoint.restore_params, tmp_path)
    assert any("/2 is damaged and was skipped" in m and "fails its checksum" in m for m in messages), messages
    np.testing.assert_array_equal(params["dense"]["kernel"], _tree(1)["params"]["dense"]["kernel"])
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(CorruptCheckpointError, match="fails its checksum"):
            _with_warnings(checkpointer.restore_subtree, "params", step=2)
        params, messages = _with_warnings(checkpointer.restore_subtree, "params", step=2, fallback=True)
    assert messages[-1] == "restored the previous good checkpoint, step 1", messages
    np.testing.assert_array_equal(params["dense"]["kernel"], _tree(1)["params"]["dense"]["kernel"])


def _with_warnings(function, *args, **kwargs):
    """``(function(*args, **kwargs), [warning messages])``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in caught]
