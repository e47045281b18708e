"""Crafted and mutated ``.pth`` files against the weights reader, each batch read in a subprocess with a time
and memory limit: no crash, no hang, no code run, no read outside a storage; either `WeightsFileError` or the
arrays PyTorch itself loads (compared where PyTorch is installed)."""

import collections
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transfer.pth_files import Storage, Tensor, laid_out_tensors, stand_in_torch, write_legacy, write_zip

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER_SECONDS = 120


def read_in_subprocess(paths):
    """The worker's JSON line per path; fails the test on a crash, a hang or a missing line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.reliability.read_weights_worker", *map(str, paths)],
                          capture_output=True, text=True, timeout=WORKER_SECONDS, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"the reader crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in results] == [str(p) for p in paths], proc.stderr[-2000:]
    return results


def assert_clean(result):
    """Either the clean error, or arrays equal to PyTorch's reading of the same file where PyTorch read it."""
    if "error" in result:
        assert result["error"] == "WeightsFileError", result
    elif "torch" in result:
        assert result["arrays"] == result["torch"], result


def _valid_state(rng):
    return laid_out_tensors([rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)], rng)[0]


def _code_pickle(module, name, marker):
    """A protocol-0 pickle calling ``module.name("touch marker")`` (or ``module.name(...)`` via INST)."""
    return f"c{module}\n{name}\n(S'touch {marker}'\ntR.".encode()


def _crafted(directory, torch):
    """name -> path of each crafted file (all must be refused), and a valid file written after them."""
    files = {}

    def tensor_file(name, offset, shape, stride, size=4, fmt="legacy", **extra):
        path = directory / f"{name}.pth"
        state = {"w": Tensor(Storage("0", np.arange(size, dtype=np.float32)), offset, shape, stride), **extra}
        (write_legacy if fmt == "legacy" else write_zip)(path, torch, state)
        files[name] = path

    tensor_file("negative_stride", 3, (4,), (-1,))
    tensor_file("negative_offset", -2, (2,), (1,))
    tensor_file("scalar_offset_1e9", 10**9, (), ())
    tensor_file("zero_stride_37gib", 0, (10**10,), (0,), size=1)
    tensor_file("overflowing_sizes", 0, (2**62, 2**62), (2**62, 1), fmt="zip")
    dag = []
    for _ in range(40):
        dag = [dag, dag]  # 2**40 paths, a few hundred bytes pickled
    tensor_file("shared_reference_dag", 0, (4,), (1,), fmt="zip", meta=dag)
    for count in (2**40, 2**62):
        path = directory / f"storage_claims_{count.bit_length() - 1}.pth"
        write_legacy(path, torch, {"w": Tensor(Storage("0", np.ones(4, np.float32)), 0, (4,), (1,))})
        data = bytearray(path.read_bytes())
        data[-24:-16] = count.to_bytes(8, "little")  # the storage's element count precedes its 16 bytes
        path.write_bytes(bytes(data))
        files[path.stem] = path
    bomb = directory / "zip_bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/data/0", bytes(64 << 20))  # ~64 KiB deflated
    files["zip_bomb"] = bomb
    deep = directory / "deep_nesting.pth"
    with zipfile.ZipFile(deep, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".")
    files["deep_nesting"] = deep
    marker = directory / "pwned"
    for module, name in [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
                         ("builtins", "__import__"), ("builtins", "getattr"), ("subprocess", "Popen"),
                         ("subprocess", "call"), ("pickle", "loads"), ("importlib", "import_module"),
                         ("numpy", "load"), ("torch", "load"), ("torch._utils", "_rebuild_from_type_v2")]:
        path = directory / f"code_{module}.{name}.pth"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", _code_pickle(module, name, marker))
        files[path.stem] = path
    # BUILD on an allow-listed global would change it for every later file read by the process.
    polluter = directory / "build_on_storage_type.pth"
    with zipfile.ZipFile(polluter, "w") as archive:
        archive.writestr("archive/data.pkl", b"ctorch\nFloatStorage\n(dS'dtype'\nS'uint8'\nsb.")
    files["build_on_storage_type"] = polluter
    valid = directory / "valid_after.pth"
    write_zip(valid, torch, _valid_state(np.random.default_rng(0)))
    return files, valid, marker


def test_crafted_files_are_refused_cleanly_and_run_no_code(tmp_path):
    with stand_in_torch() as torch:
        files, valid, marker = _crafted(tmp_path, torch)
    results = read_in_subprocess([*files.values(), valid])
    for name, result in zip(files, results):
        assert result.get("error") == "WeightsFileError", (name, result)
        assert result["message"].startswith(str(files[name])), result
    assert "arrays" in results[-1], results[-1]  # the reader's allow-list survived the BUILD attempt
    assert_clean(results[-1])
    assert not marker.exists()


_BASES = ("legacy", "zip", "zip_pickle")
mutations = st.lists(st.tuples(st.sampled_from(_BASES), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                  min_size=1, max_size=6),
                               st.one_of(st.none(), st.floats(0.3, 1))), min_size=24, max_size=24)


@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations)
def test_mutated_files_give_the_clean_error_or_pytorchs_arrays(tmp_path, batch):
    def mutate(data, edits, cut):
        data = bytearray(data)
        for where, value in edits:
            data[min(int(where * len(data)), len(data) - 1)] = value
        return bytes(data[: int(cut * len(data))] if cut is not None else data)

    paths = []
    with stand_in_torch() as torch:
        state = _valid_state(np.random.default_rng(1))
        base = {}
        for fmt in ("legacy", "zip"):
            base[fmt] = tmp_path / f"base.{fmt}"
            (write_legacy if fmt == "legacy" else write_zip)(base[fmt], torch, state)
        for i, (fmt, edits, cut) in enumerate(batch):
            path = tmp_path / f"mutant_{i}.pth"
            if fmt == "zip_pickle":  # a valid archive around a mutated pickle: reaches the unpickler
                write_zip(path, torch, state, edit_pickle=lambda data, e=edits, c=cut: mutate(data, e, c))
            else:
                path.write_bytes(mutate(base[fmt].read_bytes(), edits, cut))
            paths.append(path)
    for result in read_in_subprocess([base["legacy"], base["zip"], *paths]):
        assert_clean(result)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_pytorch_reads_the_written_files_as_the_reader_does(tmp_path, fmt):
    pytest.importorskip("torch")
    path = tmp_path / "w.pth"
    with stand_in_torch() as torch:
        (write_legacy if fmt == "legacy" else write_zip)(path, torch, collections.OrderedDict(_valid_state(np.random.default_rng(2))))
    (result,) = read_in_subprocess([path])
    assert result.get("torch") == result["arrays"], result
