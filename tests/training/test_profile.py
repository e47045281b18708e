"""`--profile START:STOP`: a jax.profiler trace holding exactly those optimizer steps."""

import flax.linen as nn
import numpy as np
import pytest

import jaxdl
from jaxdl.training.hooks import Hook, ProfileSteps
from jaxdl.training.hooks.profile import parse_steps


class TraceWatch(Hook):
    """Records, per step, whether the profiler hook before it was tracing when the step was dispatched."""

    def __init__(self, profiler):
        self.profiler, self.dispatched_while_tracing = profiler, []

    def on_step(self, loop):
        if self.profiler.traced and self.profiler.traced[-1] == loop.step:
            self.dispatched_while_tracing.append(loop.step)


@pytest.mark.parametrize("window", [(2, 3), (1, 1), (4, 9)])
def test_the_trace_holds_exactly_the_asked_steps_and_is_written(tmp_path, window):
    x = np.random.default_rng(0).normal(size=(80, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    profiler = ProfileSteps(tmp_path / "profile", *window)
    watch = TraceWatch(profiler)
    jaxdl.fit(nn.Dense(2), (x, y), loss="softmax_cross_entropy", epochs=1, batch_size=16, progress=False,
              hooks=[profiler, watch])
    expected = list(range(window[0], min(window[1], 5) + 1))  # 5 steps in all: a window past the end stops there
    assert profiler.traced == expected == watch.dispatched_while_tracing and not profiler.tracing
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_fit_and_the_config_take_a_window_and_refuse_a_bad_one(tmp_path):
    assert parse_steps("3:7") == (3, 7)
    for bad in ("7:3", "0:2", "3", "a:b"):
        with pytest.raises(ValueError, match="a profile window is START:STOP"):
            parse_steps(bad)
    x = np.zeros((32, 3), np.float32)
    jaxdl.fit(nn.Dense(2), (x, np.zeros(32, np.int32)), loss="softmax_cross_entropy", epochs=1, batch_size=16,
              progress=False, workdir=tmp_path / "run", profile="1:2")
    assert list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
