"""Checkpoints: what is kept, exact resume (also after SIGKILL), damaged checkpoints, partial and resharded restores."""

import concurrent.futures
import dataclasses
import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdl import checkpoint
from jaxdl.checkpoint import Checkpointer, CheckpointMismatchError, CheckpointPolicy, CheckpointSaveError
from tests.checkpoint import resume_worker
from tests.training.helpers import blobs, small_setup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tree(offset=0):
    offset = float(offset)
    return {"params": {"dense": {"kernel": jnp.arange(12.0).reshape(3, 4) + offset, "bias": jnp.ones(4) * offset}},
            "opt_state": {"mu": jnp.full((3, 4), offset)}, "step": jnp.int32(offset)}


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


@settings(max_examples=6)
@given(st.lists(st.one_of(st.none(), st.floats(0, 10)), min_size=1, max_size=7), st.integers(1, 3), st.integers(0, 2),
       st.booleans())
def test_keeps_the_latest_n_the_best_n_and_the_pinned_step(tmp_path_factory, values, keep_latest, keep_best, minimize):
    directory = tmp_path_factory.mktemp("keep")
    policy = CheckpointPolicy(keep_latest=keep_latest, keep_best=keep_best, best_metric="val_loss" if minimize else "val_acc",
                              asynchronous=False)
    name = policy.best_metric
    with Checkpointer(directory, policy) as checkpointer:
        checkpointer.pinned.steps = {1}
        for step, value in enumerate(values, start=1):
            checkpointer.save(step, _tree(), metrics=None if value is None else {name: value})
        kept = set(checkpointer.steps())
    # Reference: the newest keep_latest, the keep_best best of those with a metric (ties: the later one), pin 1.
    steps = list(range(1, len(values) + 1))
    scored = sorted((s for s, v in zip(steps, values) if v is not None),
                    key=lambda s: (values[s - 1] if minimize else -values[s - 1], -s))
    expected = set(steps[-keep_latest:]) | {1}
    if len(values) > keep_best:
        expected |= set(scored[:keep_best])
    else:
        expected = set(steps)
    assert kept == expected


def test_restore_names_every_differing_path_and_shape(tmp_path):
    checkpoint.save_checkpoint(tmp_path, _tree(), step=1)
    other = _tree()
    other["params"]["dense"]["kernel"] = jnp.zeros((3, 5))
    other["params"]["extra"] = jnp.zeros(2)
    del other["opt_state"]
    with pytest.raises(CheckpointMismatchError, match="does not match the model being restored") as error:
        checkpoint.restore_checkpoint(tmp_path, other)
    message = str(error.value)
    assert "params/dense/kernel: checkpoint (3, 4) vs expected (3, 5)" in message
    assert "missing in checkpoint: params/extra (2,)" in message
    assert "unexpected in checkpoint: opt_state/mu (3, 4)" in message


def _damage(step_dir, how):
    if how == "loop":
        (step_dir / "loop" / "metadata").write_text("{not json")
        return
    files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and "/d/" in str(f)]
    assert files
    for f in files:
        data = bytearray(f.read_bytes())
        if how == "truncate":
            f.write_bytes(bytes(data[: len(data) // 2]))
        else:
            data[len(data) // 3: len(data) // 3 + 8] = bytes(b ^ 0xFF for b in data[len(data) // 3: len(data) // 3 + 8])
            f.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip", "loop"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, how):
    with Checkpointer(tmp_path, CheckpointPolicy(keep_latest=3, asynchronous=False)) as checkpointer:
        for step in (1, 2, 3):
            checkpointer.save(step, _tree(step))
    _damage(tmp_path / "3", how)
    with pytest.warns(UserWarning) as caught:
        restored = checkpoint.restore_checkpoint(tmp_path, _tree())
    messages = [str(w.message) for w in caught]
    assert any("/3 is damaged and was skipped" in m for m in messages), messages
    assert any("previous good checkpoint, step 2" in m for m in messages), messages
    _assert_trees_equal(restored, _tree(2))


@pytest.mark.parametrize("kind", ["fingerprints", "checksums"])  # today's, and the CRC32 of older checkpoints
def test_a_silently_changed_array_fails_its_checksum(tmp_path, kind):
    # An array rewritten with valid encoding but other values: only the checksum can tell.
    with Checkpointer(tmp_path, CheckpointPolicy(keep_latest=3, asynchronous=False)) as checkpointer:
        checkpointer.save(1, _tree(1))
        loop = {kind: getattr(checkpoint, kind)(_tree(5))}  # checksums of other values
        checkpointer._manager.save(2, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_tree(2)), loop=ocp.args.JsonSave(loop)), force=True)
    with pytest.warns(UserWarning) as caught:
        restored = checkpoint.restore_checkpoint(tmp_path, _tree())
    messages = [str(w.message) for w in caught]
    assert any("fails its checksum" in m for m in messages) and any("step 1" in m for m in messages), messages
    _assert_trees_equal(restored, _tree(1))


@settings(max_examples=12)
@given(seed=st.integers(0, 2 ** 16), dtype=st.sampled_from(["float32", "bfloat16", "int32", "uint8", "bool"]),
       rows=st.integers(1, 3))
def test_a_fingerprint_sees_any_flipped_bit_and_not_the_sharding(seed, dtype, rows):
    rng = np.random.default_rng(seed)
    x = np.asarray(jnp.asarray(rng.standard_normal((8 * rows, 3)) * 100).astype(dtype))
    base = checkpoint.fingerprints({"x": x})
    raw = x.view(np.uint8).ravel().copy()
    byte = int(rng.integers(raw.size))
    raw[byte] ^= 1 if dtype == "bool" else 1 << int(rng.integers(8))
    assert checkpoint.fingerprints({"x": raw.view(x.dtype).reshape(x.shape)}) != base
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    assert checkpoint.fingerprints({"x": sharded}) == base


@settings(max_examples=12)
@given(seed=st.integers(0, 2 ** 16), dtypes=st.lists(st.sampled_from(
    ["float32", "bfloat16", "float16", "int32", "uint8", "int8", "bool", "float64", "int64"]), min_size=1, max_size=4),
    size=st.integers(0, 40))
def test_host_and_compiled_fingerprints_are_the_same_numbers(seed, dtypes, size):
    """Host arrays are fingerprinted in NumPy, others by the compiled reduction: checkpoints written either way
    verify either way (64-bit NumPy leaves are taken as `jnp.asarray` takes them)."""
    module = importlib.import_module("jaxdl.checkpoint.fingerprints")  # the package exports the function

    rng = np.random.default_rng(seed)
    tree = {f"leaf{i}": (rng.standard_normal((size, 2)) * 1000).astype(dtype) for i, dtype in enumerate(dtypes)}
    host = checkpoint.fingerprints(tree)
    compiled = np.asarray(module._fingerprints([jnp.asarray(leaf) for leaf in tree.values()]), np.uint64)
    assert list(host.values()) == [int(a) << 32 | int(b) for a, b in compiled]
    assert checkpoint.fingerprints(jax.tree.map(jnp.asarray, tree)) == host


def test_partial_restore_reads_only_the_requested_subtree(tmp_path):
    checkpoint.save_checkpoint(tmp_path, _tree(7), step=4)
    _assert_trees_equal(checkpoint.restore_params(tmp_path), _tree(7)["params"])
    with Checkpointer(tmp_path) as checkpointer:
        kernel_only = checkpointer.restore_subtree(lambda t: {"params": {"dense": {"kernel": t["params"]["dense"]["kernel"]}}})
        with pytest.raises(KeyError, match="has no 'batch_stats'; it has"):
            checkpointer.restore_subtree("batch_stats")
    assert jax.tree.leaves(kernel_only)[0].shape == (3, 4)
    np.testing.assert_array_equal(kernel_only["params"]["dense"]["kernel"], _tree(7)["params"]["dense"]["kernel"])


def test_restore_onto_another_device_count_and_sharding(tmp_path):
    devices = np.array(jax.devices())
    wide = Mesh(devices.reshape(2, 4), ("data", "model"))
    tree = _tree(3)
    saved = jax.tree.map(lambda a: jax.device_put(a, NamedSharding(wide, PartitionSpec(*([None] * (a.ndim - 1) + ["model"]))
                                                                     if a.ndim and a.shape[-1] % 4 == 0 else PartitionSpec())),
                         tree)
    assert saved["params"]["dense"]["kernel"].sharding.spec == PartitionSpec(None, "model")
    checkpoint.save_checkpoint(tmp_path, saved, step=1)
    narrow = Mesh(devices[:2].reshape(1, 2), ("data", "model"))
    shardings = jax.tree.map(lambda a: NamedSharding(narrow, PartitionSpec(None, "model") if a.ndim == 2 else PartitionSpec()), tree)
    restored = checkpoint.restore_checkpoint(tmp_path, tree, shardings=shardings)
    assert restored["params"]["dense"]["kernel"].sharding == shardings["params"]["dense"]["kernel"]
    assert len(restored["params"]["dense"]["kernel"].addressable_shards) == 2
    _assert_trees_equal(restored, tree)
    impossible = jax.tree.map(lambda a: NamedSharding(narrow, PartitionSpec("model") if a.ndim == 2 else PartitionSpec()), tree)
    with pytest.raises(ValueError, match=r"cannot restore an array of shape \(3, 4\)"):
        checkpoint.restore_checkpoint(tmp_path, tree, shardings=impossible)


def test_a_failed_background_save_is_reported_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    with Checkpointer(tmp_path, CheckpointPolicy(keep_latest=3)) as checkpointer:
        checkpointer.save(1, _tree(1))
        checkpointer.wait()
    handler = ocp.JsonCheckpointHandler

    async def broken_async_save(self, directory, *args, **kwargs):
        write = concurrent.futures.Future()  # the background write that fails
        write.set_exception(OSError("disk full (simulated)"))
        return [write]

    monkeypatch.setattr(handler, "async_save", broken_async_save)
    checkpointer = Checkpointer(tmp_path, CheckpointPolicy(keep_latest=3))
    with pytest.raises(CheckpointSaveError, match="disk full"):
        checkpointer.save(2, _tree(2))
        checkpointer.close()
    monkeypatch.undo()
    assert checkpoint.latest_step(tmp_path) == 1
    _assert_trees_equal(checkpoint.restore_checkpoint(tmp_path, _tree()), _tree(1))


def _final_leaves(result):
    return jax.tree.leaves(jax.device_get((result.state.params, result.state.batch_stats, result.state.opt_state)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = resume_worker.run(str(workdir))
    return result, workdir


def _run_worker(workdir, *args):
    return subprocess.run([sys.executable, "-m", "tests.checkpoint.resume_worker", str(workdir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kill", ["step:9", "save:5"])
def test_resume_after_sigkill_is_bitwise_equal_to_the_uninterrupted_run(tmp_path, uninterrupted, kill):
    killed = _run_worker(tmp_path, kill)
    assert killed.returncode == -9, killed.stderr[-3000:]
    survivors = checkpoint.latest_step(tmp_path / "checkpoints")
    assert survivors is not None and survivors < resume_worker.EPOCHS * 6
    finished = _run_worker(tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    final = np.load(tmp_path / "final.npz")
    reference = _final_leaves(uninterrupted[0])
    assert len(final.files) == len(reference)
    for i, leaf in enumerate(reference):
        np.testing.assert_array_equal(final[f"arr_{i}"], leaf)
    # The log holds each step once, as the uninterrupted run's does.
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    reference_steps = [json.loads(line)["step"] for line in (uninterrupted[1] / "metrics.jsonl").read_text().splitlines()
                       if json.loads(line)["kind"] == "train"]
    assert steps == reference_steps
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_epoch"] == uninterrupted[0].summary["best_epoch"]


@settings(max_examples=2)
@given(st.integers(1, resume_worker.EPOCHS * 6 - 1))
def test_resume_from_any_step_in_process_is_bitwise_equal(tmp_path_factory, uninterrupted, crash_at):
    # A crash (an exception, so in-process) before step `crash_at`; every_steps=1 so the crash step's
    # predecessor is on disk.
    workdir = tmp_path_factory.mktemp("crash")
    policy = CheckpointPolicy(every_steps=1, keep_latest=2, keep_best=1, best_metric="val_loss")
    with pytest.raises(KeyboardInterrupt):
        resume_worker.run(str(workdir), f"raise:{crash_at}", policy=policy)
    assert checkpoint.latest_step(workdir / "checkpoints") == (crash_at - 1 or None)
    resumed = resume_worker.run(str(workdir), policy=policy)
    for a, b in zip(_final_leaves(resumed), _final_leaves(uninterrupted[0])):
        np.testing.assert_array_equal(a, b)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in uninterrupted[0].history]


def test_resume_refuses_another_seed_and_resume_flags_are_checked(tmp_path):
    _, state, step, eval_step, _ = small_setup()
    kwargs = dict(train_step=jax.jit(step), eval_step=jax.jit(eval_step), train_data=blobs(64), batch_size=32,
                  num_epochs=1, workdir=tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        resume_worker.fit(state, resume=True, **kwargs)
    resume_worker.fit(state, seed=0, **kwargs)
    with pytest.raises(ValueError, match="trained with seed=0, this run has seed=1"):
        resume_worker.fit(state, seed=1, **kwargs)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        resume_worker.fit(state, seed=0, resume=False, **kwargs)


def test_a_nan_step_never_overwrites_the_good_checkpoint(tmp_path):
    _, state, step, eval_step, _ = small_setup()
    kwargs = dict(train_step=jax.jit(step), eval_step=jax.jit(eval_step), batch_size=32, workdir=tmp_path,
                  progress=False, log_every=1)
    good = resume_worker.fit(state, train_data=blobs(64), num_epochs=1, **kwargs)
    assert checkpoint.latest_step(tmp_path / "checkpoints") == 2
    poisoned = blobs(64)
    poisoned.x[:] = np.nan
    with pytest.raises(FloatingPointError, match="last good checkpoint is untouched"):
        resume_worker.fit(state, train_data=poisoned, num_epochs=2, **kwargs)
    assert checkpoint.latest_step(tmp_path / "checkpoints") == 2
    _assert_trees_equal(checkpoint.restore_checkpoint(tmp_path / "checkpoints", state), good.state)


def test_resuming_a_run_that_restores_its_best_epoch_returns_the_same_state(tmp_path):
    from jaxdl.training.early_stopping import EarlyStopping

    def run(workdir, epochs):
        _, state, step, eval_step, _ = small_setup()  # a fresh state each time: the step donates its buffers
        return resume_worker.fit(state, train_step=jax.jit(step, donate_argnums=0), eval_step=jax.jit(eval_step),
                                 train_data=blobs(64), validation_data=blobs(32, seed=4), batch_size=16,
                                 num_epochs=epochs, workdir=workdir, progress=False,
                                 early_stopping=EarlyStopping("val_loss", patience=None, restore_best=True))

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 4)  # the best state so far comes back from its checkpoint
    assert resumed.summary["best_epoch"] == straight.summary["best_epoch"]
    _assert_trees_equal(resumed.state.params, straight.state.params)


def test_a_checkpoint_from_before_a_state_field_existed_restores_with_that_field_empty(tmp_path):
    """Checkpoints written before `TrainState.average` existed restore into a state that keeps no average (the
    field stays None) and refuse one that does: its average is missing from the checkpoint."""
    import flax

    from jaxdl.training.optimizers import make_optimizer
    from jaxdl.training.state import TrainState, create_train_state

    model, state = small_setup()[:2]
    tx, _ = make_optimizer({"name": "adam", "learning_rate": 1e-2}, 10, 3)
    state = create_train_state(model, tx, blobs(1).x, 0)
    fields = [f.name for f in dataclasses.fields(TrainState) if f.name != "average"]
    Older = flax.struct.dataclass(type("Older", (), {"__annotations__": {name: object for name in fields}}))
    checkpoint.save_checkpoint(tmp_path, Older(**{name: getattr(state, name) for name in fields}), step=3)
    restored = checkpoint.restore_checkpoint(tmp_path, state)
    assert isinstance(restored, TrainState) and restored.average is None
    _assert_trees_equal(restored, state)
    with pytest.raises(CheckpointMismatchError, match="missing in checkpoint: average"):
        checkpoint.restore_checkpoint(tmp_path, create_train_state(model, tx, blobs(1).x, 0, average=True))
