"""Using a trained model: `summary` counts what a hand count gives and XLA's FLOPs, `export` round-trips through
`jax.export` at any batch size without jaxdl, and `jaxdl predict`/`export`/`summary` work on finished runs."""

import importlib.util
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl
from jaxdl.cli import main
from tests.api.test_fit import QUIET, TwoInputs, _binary

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Mlp(nn.Module):
    hidden: int = 5

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(self.hidden)(x)))


def test_summary_counts_parameters_as_a_hand_count_and_flops_as_xla_does():
    features, hidden, batch = 7, 5, 4
    result = jaxdl.summary(Mlp(hidden), np.zeros((batch, features), np.float32))
    assert result.total_params == features * hidden + hidden + hidden * 3 + 3
    assert f"total parameters: {result.total_params:,}" in str(result)
    assert "Dense_0" in result.table and "Dense_1" in result.table
    plain = jaxdl.summary(nn.Dense(6, use_bias=False), np.zeros((batch, features), np.float32))
    assert plain.total_params == features * 6
    assert plain.flops == 2 * batch * features * 6  # one matmul: a multiply and an add per term


def _deserialize(path):
    return jax.export.deserialize(bytearray(pathlib.Path(path).read_bytes()))


@pytest.mark.parametrize("inputs", ["array", "dict"])
def test_an_exported_model_runs_without_jaxdl_at_any_batch_size_as_predict_does(tmp_path, inputs):
    x, y = _binary(64)
    if inputs == "dict":
        x = {"numbers": x, "category": (np.abs(x[:, 2]) * 2).astype(np.int32) % 5}
        run = jaxdl.fit(TwoInputs(), (x, y), loss="binary_cross_entropy", epochs=1, **QUIET)
    else:
        run = jaxdl.fit(Mlp(), (x, y.astype(np.int32) % 3), loss="softmax_cross_entropy", epochs=1, **QUIET)
    path = run.export(tmp_path / "model.jaxexport")
    exported = _deserialize(path)
    for n in (7, 13):
        part = jax.tree.map(lambda a: a[:n], x)
        np.testing.assert_allclose(np.asarray(exported.call(part)), run.predict(part), rtol=1e-6, atol=1e-6)
    spec = json.loads(path.with_suffix(".json").read_text())
    if inputs == "dict":
        assert spec["numbers"] == {"shape": ["batch", 6], "dtype": "float32"}
    else:
        assert spec == {"shape": ["batch", 6], "dtype": "float32"}


def test_predict_export_and_summary_commands_on_a_finished_run(tmp_path, capsys):
    workdir = tmp_path / "run"
    experiment = str(ROOT / "experiments" / "mnist_mlp.py")
    assert main(["train", experiment, "--workdir", str(workdir), "--config.data.train_limit=256",
                 "--config.data.eval_limit=100", "--config.train.num_epochs=1", "--config.train.progress=False",
                 "--config.model.hidden_sizes=(16,)", "--config.train.strategy=jit"]) == 0
    inference = jaxdl.load(workdir)
    x = np.random.default_rng(0).random((5, *inference.input_spec.shape)).astype(inference.input_spec.dtype)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert main(["predict", str(workdir), str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [5, 10]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), inference.predict(x))
    assert main(["export", str(workdir)]) == 0
    artifact = json.loads(capsys.readouterr().out)["artifact"]
    np.testing.assert_allclose(np.asarray(_deserialize(artifact).call(jnp.asarray(x))), inference.predict(x),
                               rtol=1e-6, atol=1e-6)
    if importlib.util.find_spec("jax2onnx") and importlib.util.find_spec("onnxruntime"):
        assert main(["export", str(workdir), "--format", "onnx"]) == 0  # checked against predict as it is written
        assert pathlib.Path(json.loads(capsys.readouterr().out)["artifact"]).stat().st_size > 28 * 28 * 16 * 4
    assert main(["summary", experiment, "--config.model.hidden_sizes=(16,)"]) == 0
    assert f"total parameters: {28 * 28 * 16 + 16 + 16 * 10 + 10:,}" in capsys.readouterr().out


def test_an_onnx_export_runs_in_onnx_runtime_as_predict_does_at_any_batch_size(tmp_path):
    pytest.importorskip("jax2onnx", reason="jax2onnx is not installed (requirements-nodeps.txt)")
    runtime = pytest.importorskip("onnxruntime")
    from jaxdl.models import ConvNet

    x = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype(np.float32)
    y = (x.mean((1, 2, 3)) > 0).astype(np.int32)
    run = jaxdl.fit(ConvNet(channels=(4, 8), dense=(16,), num_outputs=2, batch_norm=True), (x, y),
                    loss="softmax_cross_entropy", epochs=1, **QUIET)
    path = jaxdl.export_onnx(run, tmp_path / "model.onnx")  # checks itself against predict on a random batch
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [d if isinstance(d, int) else "batch" for d in session.get_inputs()[0].shape] == ["batch", 8, 8, 1]
    for n in (1, 9):
        np.testing.assert_allclose(session.run(None, {"x": x[:n]})[0], run.predict(x[:n]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="differs from the JAX model"):
        from jaxdl.api.onnx_export import check_onnx

        other = jaxdl.fit(ConvNet(channels=(4, 8), dense=(16,), num_outputs=2, batch_norm=True), (x, y),
                          loss="softmax_cross_entropy", epochs=1, seed=1, **QUIET)
        check_onnx(path, other)
