"""`jaxdl.nn.lowering.autotune`: `tune` measures each use a trace asks about before the real trace, which only
reads the choices; the fastest candidate of each pass is chosen, cached on disk and reused; ties, 'off' and
untuned uses keep the default, and nothing is measured or written while tracing; `combine` runs each pass
through its choice."""

import itertools
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.distributed.parallel import make_parallel
from jaxdl.nn import lowering
from jaxdl.nn.conv import conv2d
from jaxdl.nn.conv_transpose import conv_transpose2d
from jaxdl.nn.lowering import autotune


def _slow(x):
    # The same value as _fast, linear in x like every candidate, through 20 matmuls by the identity.
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    for _ in range(20):
        x = x @ eye
    return x * 2.0


def _fast(x):
    return x * 2.0


def _passes_off(combo, best):
    """A combination's time when each pass costs 1 ms through its fastest candidate and 2 ms through any other:
    additive over passes, as the tuner's coordinate sweep assumes of real convolutions."""
    return float(len(combo) + sum(c != b for c, b in zip(combo, best)))


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    """Measuring on, a fresh cache directory and an empty in-process memory."""
    monkeypatch.setenv("JAXDL_CACHE", str(tmp_path))
    _forget(monkeypatch)
    monkeypatch.setattr(autotune, "_MIN_VALUES", 0)
    with lowering.use("auto", measure=True):
        yield tmp_path


def _forget(monkeypatch):
    """A new process: nothing in memory, the cache file not yet read."""
    monkeypatch.setattr(autotune, "_MEMORY", {})
    monkeypatch.setattr(autotune, "_DISK", {})


def _choice(op, cands, args, params, default, wrt=()):
    """What the real trace runs for one use after `tune` traced a function asking about it."""
    def asks(*args):
        autotune.fastest(op, cands, args, params, default, wrt)
        return jnp.zeros(())

    autotune.tune(asks, *args)
    return autotune.fastest(op, cands, args, params, default, wrt)


def test_picks_the_faster_candidate_and_caches_it_on_disk(tuning, monkeypatch):
    x = jnp.ones((256, 256))
    cands = {"slow": _slow, "fast": _fast}
    for default in ("slow", "fast"):
        assert _choice("double", cands, (x,), params=(1,), default=default) == ("fast",)
        assert _choice("double", cands, (x,), params=(1,), default=default, wrt=(0,)) == ("fast", "fast")
    entries = {len(e["choice"]): e for e in json.loads(autotune.cache_file().read_text())["choices"].values()}
    assert entries[1]["choice"] == ["fast"] and entries[2]["choice"] == ["fast", "fast"]
    assert entries[1]["ms"]["slow"] > entries[1]["ms"]["fast"]
    assert entries[2]["ms"]["slow slow"] > entries[2]["ms"]["fast fast"]
    # A new process (empty memory) reads the file and measures nothing.
    _forget(monkeypatch)
    monkeypatch.setattr(autotune, "_combination_ms", lambda *a: pytest.fail("measured again despite the cache"))
    assert _choice("double", cands, (x,), params=(1,), default="slow", wrt=(0,)) == ("fast", "fast")


def test_every_combination_is_measured_once_per_shape_parameter_and_differentiated_set(tuning, monkeypatch):
    calls = []
    monkeypatch.setattr(autotune, "_combination_ms",
                        lambda cands, combo, structs, wrt: calls.append((structs[0].shape, combo, wrt)) or 1.0)
    cands = {"a": _fast, "b": _fast}
    for shape, params, wrt in (((4, 4), 1, (0, 1)), ((4, 4), 1, (0, 1)), ((8, 4), 1, (0, 1)), ((4, 4), 2, (0, 1)),
                               ((4, 4), 1, (1,)), ((4, 4), 1, ())):
        _choice("op", cands, (jnp.ones(shape), jnp.ones(shape)), params=params, default="a", wrt=wrt)
    triples = [(f, g, h) for f in "ab" for g in "ab" for h in "ab"]
    expected = [((4, 4), c, (0, 1)) for c in triples] + [((8, 4), c, (0, 1)) for c in triples]
    expected += [((4, 4), c, (0, 1)) for c in triples] + [((4, 4), (f, g), (1,)) for f in "ab" for g in "ab"]
    expected += [((4, 4), ("a",), ()), ((4, 4), ("b",), ())]
    assert calls == expected


@settings(max_examples=30)
@given(costs=st.lists(st.lists(st.floats(1.0, 10.0), min_size=3, max_size=3), min_size=3, max_size=3))
def test_three_candidates_are_swept_pass_by_pass_to_the_fastest_additive_combination(costs):
    """Three candidates, forward and two gradients: 27 combinations. When a combination costs the sum of its
    passes' costs, the sweep finds the fastest while timing at most 9 of them."""
    names = ("a", "b", "c")
    timed = []

    def ms(cands, combo, structs, wrt):
        timed.append(combo)
        return sum(costs[position][names.index(name)] for position, name in enumerate(combo))

    request = autotune._Request({n: _fast for n in names}, (jax.ShapeDtypeStruct((4,), jnp.float32),) * 2, (0, 1),
                                ("a", "a", "a"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autotune, "_combination_ms", ms)
        choice, record = autotune._measure(request)
    optimum = min(sum(row) for row in [[costs[p][names.index(c[p])] for p in range(3)]
                                       for c in itertools.product(names, repeat=3)])
    total = sum(costs[p][names.index(choice[p])] for p in range(3))
    assert total <= optimum * 1.06  # the optimum, or the default within the 5% tie band
    assert len(set(timed)) == len(timed) <= 9 and len(record["ms"]) == len(timed)


def test_ties_keep_the_default(tuning, monkeypatch):
    times = {("a", "a"): 1.00, ("a", "b"): 0.97, ("b", "a"): 1.2, ("b", "b"): 1.1}  # a-b: 3%, within the 5% band
    monkeypatch.setattr(autotune, "_combination_ms", lambda cands, combo, structs, wrt: times[combo])
    cands = {"a": _fast, "b": _fast}
    assert _choice("op", cands, (jnp.ones(3),), params=(), default="a", wrt=(0,)) == ("a", "a")
    times["a", "b"] = 0.5
    _forget(monkeypatch)
    assert _choice("op", cands, (jnp.ones(4),), params=(), default="a", wrt=(0,)) == ("a", "b")


def test_a_cache_record_of_the_whole_step_tuner_is_measured_again(tuning, monkeypatch):
    key = json.dumps(["op", repr(()), [((3,), "float32")], ["a", "b"], [0]])
    path = autotune.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"choices": {key: {"choice": "a", "train_ms": {"a": 1.0, "b": 2.0}}}}))
    monkeypatch.setattr(autotune, "_combination_ms", lambda cands, combo, structs, wrt: 1.0 + (combo[0] == "a"))
    assert _choice("op", {"a": _fast, "b": _fast}, (jnp.ones(3),), (), default="a", wrt=(0,)) == ("b", "a")
    assert json.loads(path.read_text())["choices"][key]["choice"] == ["b", "a"]


@pytest.mark.parametrize("settings", [dict(measure=False), dict(mode="xla"), dict(mode="patches")])
def test_off_returns_the_default_without_measuring(tuning, monkeypatch, settings):
    monkeypatch.setattr(autotune, "_combination_ms", lambda *a: pytest.fail("measured while off"))
    cands = {"slow": _slow, "fast": _fast}
    with lowering.use(**settings):
        assert _choice("double", cands, (jnp.ones(3),), (), default="slow", wrt=(0,)) == ("slow", "slow")
        assert autotune.tuned("double", cands, (), default="slow") is _slow
    assert not autotune.cache_file().exists()


def test_nothing_is_measured_or_written_while_tracing(tuning, monkeypatch):
    """A use nobody tuned takes the default inside jit: no timing, no cache file, no choice remembered."""
    monkeypatch.setattr(autotune, "_combination_ms", lambda *a: pytest.fail("measured while tracing"))
    f = autotune.tuned("double", {"slow": _slow, "fast": _fast}, (), default="slow")
    x = jnp.ones((8, 8))
    np.testing.assert_allclose(jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x), 2.0 * np.ones((8, 8)))
    assert not autotune.cache_file().exists() and not autotune.choices()


def test_tune_says_on_stderr_that_it_measures_and_a_second_tune_measures_nothing(tuning, monkeypatch, capsys):
    monkeypatch.setattr(autotune, "_combination_ms", lambda cands, combo, structs, wrt: 1.0 + (combo[0] == "slow"))
    f = autotune.tuned("double", {"slow": _slow, "fast": _fast}, (), default="slow")
    x = jnp.ones((8, 8))
    step = jax.grad(lambda x: jnp.sum(f(x)))
    assert len(autotune.tune(step, x)) == 1
    err = capsys.readouterr().err
    assert "timing the lowerings of 1 convolution use(s)" in err and str(autotune.cache_file()) in err and "timed 1" in err
    assert autotune.tune(step, x) == {} and capsys.readouterr().err == ""


def test_choices_broadcast_from_process_zero_round_trip(monkeypatch):
    """The multi-process path: process 0's choices travel as JSON bytes and come back as the same tuples."""
    from jax.experimental import multihost_utils

    monkeypatch.setattr(multihost_utils, "broadcast_one_to_all", lambda x: x)
    measured = {'["conv2d", "x"]': ("xla", "patches", "patches"), '["conv2d", "y"]': ("patches",)}
    assert autotune._from_process_zero(measured) == measured


def test_small_problems_take_the_default_without_measuring(tuning, monkeypatch):
    monkeypatch.setattr(autotune, "_MIN_VALUES", 1000)
    monkeypatch.setattr(autotune, "_combination_ms", lambda *a: pytest.fail("measured a small problem"))
    assert _choice("op", {"a": _fast, "b": _fast}, (jnp.ones(999),), (), default="b", wrt=(0,)) == ("b", "b")


def test_a_corrupt_cache_file_is_ignored_with_a_warning_and_rewritten(tuning, monkeypatch):
    # Fixed timings: what is tested is the cache handling, not a measurement on a busy machine.
    monkeypatch.setattr(autotune, "_combination_ms", lambda cands, combo, structs, wrt: {"slow": 2.0, "fast": 1.0}[combo[0]])
    path = autotune.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"choices": {"trunc')
    with pytest.warns(UserWarning, match="unreadable autotune cache"):
        choice = _choice("double", {"slow": _slow, "fast": _fast}, (jnp.ones((64, 64)),), (), default="slow")
    assert choice == ("fast",)
    assert json.loads(path.read_text())["choices"]  # valid JSON again, holding the new choice
    assert not list(path.parent.glob("*.tmp"))  # no temporary file left behind


def test_an_unknown_default_is_refused(tuning):
    with pytest.raises(ValueError, match="not among the candidates"):
        _choice("op", {"a": _fast}, (jnp.ones(3),), (), default="b")


# Three bilinear candidates that differ by a factor, so each result shows which candidate computed it.
_SCALED = {"one": lambda x, k: x * k, "two": lambda x, k: 2.0 * x * k, "three": lambda x, k: 3.0 * x * k}


@settings(max_examples=10)
@given(st.sampled_from(list(_SCALED)), st.sampled_from(list(_SCALED)), st.sampled_from(list(_SCALED)),
       st.integers(0, 2**31 - 1))
def test_combine_runs_each_pass_through_its_choice(forward, grad_x, grad_k, seed):
    rng = np.random.default_rng(seed)
    x, k, tx, tk = (jnp.asarray(rng.standard_normal(5), jnp.float32) for _ in range(4))
    scale = {"one": 1.0, "two": 2.0, "three": 3.0}
    f = autotune.combine(_SCALED, forward, {0: grad_x, 1: grad_k})
    np.testing.assert_allclose(f(x, k), scale[forward] * x * k, rtol=1e-6)
    gx, gk = jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1))(x, k)
    np.testing.assert_allclose(gx, scale[grad_x] * k, rtol=1e-6)
    np.testing.assert_allclose(gk, scale[grad_k] * x, rtol=1e-6)
    _, tangent = jax.jvp(f, (x, k), (tx, tk))  # forward mode too
    np.testing.assert_allclose(tangent, scale[grad_x] * tx * k + scale[grad_k] * x * tk, rtol=1e-5, atol=1e-6)
    # Second derivatives: d/dk of the x-gradient is the x-gradient's candidate's factor.
    mixed = jax.grad(lambda k: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, k)))(x)))(k)
    np.testing.assert_allclose(mixed, np.full(5, scale[grad_x]), rtol=1e-6)


def test_combine_leaves_an_argument_that_is_not_differentiated_alone():
    def refuses(x, k):
        raise AssertionError("the kernel-gradient candidate ran for a gradient that was not asked for")
    f = autotune.combine({"a": lambda x, k: x * k, "refuses": refuses}, "a", {0: "a", 1: "refuses"})
    x, k = jnp.arange(3.0), jnp.ones(3)
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(f(x, k)))(x), k)
    g = autotune.combine(_SCALED, "one", {1: "two"})  # chosen for the kernel only
    with pytest.raises(ValueError, match="argument 0 is differentiated"):
        jax.grad(lambda x: jnp.sum(g(x, k)))(x)


def test_tuned_runs_the_fastest_forward_alone_and_the_fastest_combination_for_what_is_differentiated(
        tuning, monkeypatch):
    # Forward alone: "three" is fastest; differentiated, the combination (one, two, three) is; for the kernel
    # alone, (two, one).
    def ms(cands, combo, structs, wrt):
        best = {(): ("three",), (0, 1): ("one", "two", "three"), (1,): ("two", "one")}[wrt]
        return _passes_off(combo, best)
    monkeypatch.setattr(autotune, "_combination_ms", ms)
    f = autotune.tuned("scaled", _SCALED, (), default="one")
    rng = np.random.default_rng(0)
    x, k = (jnp.asarray(rng.standard_normal(7), jnp.float32) for _ in range(2))
    autotune.tune(f, x, k)
    autotune.tune(jax.grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1)), x, k)
    autotune.tune(jax.grad(lambda k: jnp.sum(f(x, k))), k)
    np.testing.assert_allclose(jax.jit(f)(x, k), 3 * x * k, rtol=1e-6)
    value, (gx, gk) = jax.value_and_grad(lambda x, k: jnp.sum(f(x, k)), argnums=(0, 1))(x, k)
    np.testing.assert_allclose(value, jnp.sum(x * k), rtol=1e-5)
    np.testing.assert_allclose(gx, 2 * k, rtol=1e-6)
    np.testing.assert_allclose(gk, 3 * x, rtol=1e-6)
    value, gk = jax.value_and_grad(lambda k: jnp.sum(f(x, k)))(k)
    np.testing.assert_allclose(value, 2 * jnp.sum(x * k), rtol=1e-5)
    np.testing.assert_allclose(gk, x, rtol=1e-6)


def test_auto_convolutions_tune_inside_jit_and_grad_and_match_xla(tuning):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)
    kt = jnp.asarray(rng.standard_normal((4, 4, 4, 2)), jnp.float32)

    def loss(x, k, kt):
        return jnp.sum(conv_transpose2d(conv2d(x, k, 2, "SAME"), kt, 2, "SAME") ** 2)

    step = jax.value_and_grad(loss, argnums=(0, 1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache is written without complaint
        autotune.tune(step, x, k, kt)
        auto = jax.jit(step)(x, k, kt)
    with lowering.use("xla"):
        ref = step(x, k, kt)
    for got, want in zip(jax.tree.leaves(auto), jax.tree.leaves(ref)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    ops = {json.loads(key)[0] for key in json.loads(autotune.cache_file().read_text())["choices"]}
    assert ops == {"conv2d", "conv_transpose2d"}


def test_auto_convolutions_with_passes_split_between_lowerings_match_xla(tuning, monkeypatch):
    def xla_forward_patches_gradients(cands, combo, structs, wrt):
        return _passes_off(combo, ("xla",) + ("patches",) * len(wrt))

    monkeypatch.setattr(autotune, "_combination_ms", xla_forward_patches_gradients)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((3, 11, 10, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)
    for stride, padding in ((1, "SAME"), (2, "VALID")):
        step = jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv2d(x, k, stride, padding))), argnums=(0, 1))
        autotune.tune(step, x, k)
        auto = jax.jit(step)(x, k)
        with lowering.use("xla"):
            ref = step(x, k)
        for got, want in zip(jax.tree.leaves(auto), jax.tree.leaves(ref)):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    choices = [entry["choice"] for entry in json.loads(autotune.cache_file().read_text())["choices"].values()]
    assert choices == [["xla", "patches", "patches"]] * 2


def test_a_compiled_step_tunes_its_convolutions_on_its_first_call_before_tracing(tuning, monkeypatch):
    """`Parallel.compile_train_step` (every strategy) tunes the pure step on its first call: the compiled
    program then runs the measured choice (here XLA forward, patches gradients: the value matches XLA)."""
    def xla_forward_patches_gradients(cands, combo, structs, wrt):
        return _passes_off(combo, ("xla",) + ("patches",) * len(wrt))

    monkeypatch.setattr(autotune, "_combination_ms", xla_forward_patches_gradients)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((4, 8, 8, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)

    def step(k, x):
        return jax.grad(lambda k: jnp.sum(jnp.sin(conv2d(x, k))))(k)

    compiled = make_parallel("jit").compile_eval_step(step)
    got = compiled(k, x)
    assert list(autotune.choices().values()) == [("xla", "patches")]
    with lowering.use("xla"):
        np.testing.assert_allclose(got, step(k, x), rtol=2e-4, atol=2e-4)
