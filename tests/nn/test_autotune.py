"""`jaxdl.nn.autotune`: the fastest candidate is chosen, cached on disk and reused; ties and 'off' keep the default."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.nn import autotune
from jaxdl.nn.conv import conv2d
from jaxdl.nn.conv_transpose import conv_transpose2d


def _slow(x):
    # The same value as _fast, computed through 60 dependent passes over the array.
    for _ in range(60):
        x = jnp.sin(x) * 0.0 + x
    return x * 2.0


def _fast(x):
    return x * 2.0


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """Measuring on, a fresh cache directory and an empty in-process memory."""
    monkeypatch.setenv("JAXDL_AUTOTUNE", "1")
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    monkeypatch.setattr(autotune, "_MEMORY", {})
    monkeypatch.setattr(autotune, "_MIN_VALUES", 0)
    return tmp_path


def test_picks_the_faster_candidate_and_caches_it_on_disk(tuning, monkeypatch):
    x = jnp.ones((256, 256))
    for default in ("slow", "fast"):
        assert autotune.fastest("double", {"slow": _slow, "fast": _fast}, (x,), params=(1,), default=default) == "fast"
    record = json.loads(autotune.cache_file().read_text())
    (entry,) = record["choices"].values()
    assert entry["choice"] == "fast" and entry["train_ms"]["slow"] > entry["train_ms"]["fast"]
    # A new process (empty memory) reads the file and measures nothing.
    monkeypatch.setattr(autotune, "_MEMORY", {})
    monkeypatch.setattr(autotune, "_train_ms", lambda *a: pytest.fail("measured again despite the cache"))
    assert autotune.fastest("double", {"slow": _slow, "fast": _fast}, (x,), params=(1,), default="slow") == "fast"


def test_a_different_shape_or_parameter_is_measured_on_its_own(tuning, monkeypatch):
    calls = []
    monkeypatch.setattr(autotune, "_train_ms", lambda fn, structs: calls.append(structs[0].shape) or 1.0)
    cands = {"a": _fast, "b": _fast}
    for shape, params in (((4, 4), 1), ((4, 4), 1), ((8, 4), 1), ((4, 4), 2)):
        autotune.fastest("op", cands, (jnp.ones(shape),), params=params, default="a")
    assert calls == [(4, 4), (4, 4), (8, 4), (8, 4), (4, 4), (4, 4)]


def test_ties_keep_the_default(tuning, monkeypatch):
    times = {"a": 1.00, "b": 0.97}  # b is 3% faster: within the 5% tie band
    monkeypatch.setattr(autotune, "_train_ms", lambda fn, structs: times[fn.__name__])
    def a(x): return x
    def b(x): return x
    assert autotune.fastest("op", {"a": a, "b": b}, (jnp.ones(3),), params=(), default="a") == "a"
    times["b"] = 0.5
    monkeypatch.setattr(autotune, "_MEMORY", {})
    assert autotune.fastest("op", {"a": a, "b": b}, (jnp.ones(4),), params=(), default="a") == "b"


def test_off_returns_the_default_without_measuring(tuning, monkeypatch):
    monkeypatch.setenv("JAXDL_AUTOTUNE", "0")
    monkeypatch.setattr(autotune, "_train_ms", lambda *a: pytest.fail("measured while off"))
    assert autotune.fastest("double", {"slow": _slow, "fast": _fast}, (jnp.ones(3),), (), default="slow") == "slow"
    assert not autotune.cache_file().exists()


def test_small_problems_take_the_default_without_measuring(tuning, monkeypatch):
    monkeypatch.setattr(autotune, "_MIN_VALUES", 1000)
    monkeypatch.setattr(autotune, "_train_ms", lambda *a: pytest.fail("measured a small problem"))
    assert autotune.fastest("op", {"a": _fast, "b": _fast}, (jnp.ones(999),), (), default="b") == "b"


def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tuning):
    path = autotune.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"choices": {"trunc')
    with pytest.warns(UserWarning, match="unreadable autotune cache"):
        choice = autotune.fastest("double", {"slow": _slow, "fast": _fast}, (jnp.ones((64, 64)),), (), default="slow")
    assert choice == "fast"
    assert json.loads(path.read_text())["choices"]  # valid JSON again, holding the new choice
    assert not list(path.parent.glob("*.tmp"))  # no temporary file left behind


def test_an_unknown_default_is_refused(tuning):
    with pytest.raises(ValueError, match="not among the candidates"):
        autotune.fastest("op", {"a": _fast}, (jnp.ones(3),), (), default="b")


def test_auto_convolutions_tune_inside_jit_and_grad_and_match_xla(tuning):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)
    kt = jnp.asarray(rng.standard_normal((4, 4, 4, 2)), jnp.float32)

    def loss(impl, x, k, kt):
        y = conv2d(x, k, 2, "SAME", implementation=impl)
        return jnp.sum(conv_transpose2d(y, kt, 2, "SAME", implementation=impl) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache is written without complaint
        auto = jax.jit(jax.value_and_grad(lambda *a: loss("auto", *a), argnums=(0, 1, 2)))(x, k, kt)
    ref = jax.value_and_grad(lambda *a: loss("xla", *a), argnums=(0, 1, 2))(x, k, kt)
    for got, want in zip(jax.tree.leaves(auto), jax.tree.leaves(ref)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    ops = {json.loads(key)[0] for key in json.loads(autotune.cache_file().read_text())["choices"]}
    assert ops == {"conv2d", "conv_transpose2d"}
