"""The throughput figures of every logging interval against the same numbers computed outside the loop."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxdl
from jaxdl.data.pipeline import train_batches
from jaxdl.distributed.parallel import compile_eval_step, compile_train_step, make_parallel
from jaxdl.training.hooks import Hook, Throughput
from jaxdl.training.loop import fit
from jaxdl.training.step_cost import device_memory, matmul_rate, step_flops
from tests.training.helpers import blobs, small_setup


class Clock:
    """A clock that advances a fixed amount each time it is read: throughput becomes exact arithmetic."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


class Records(Hook):
    def __init__(self):
        self.records = []

    def on_metrics(self, loop, record):
        self.records.append(dict(record))


def test_throughput_is_the_intervals_examples_over_its_wall_time_and_reaches_the_log(tmp_path):
    x = np.random.default_rng(0).normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    clock, records = Clock(0.5), Records()
    meter = Throughput(clock)
    jaxdl.fit(nn.Dense(2), (x, y), loss="softmax_cross_entropy", epochs=2, batch_size=16, progress=False,
              hooks=[meter, records])
    steps = [r["step"] for r in records.records]
    assert steps == [6, 12]  # one sync at each epoch's end: 96 / 16 = 6 steps an epoch
    for record, previous in zip(records.records, [0, *steps]):
        assert record["step_seconds"] == pytest.approx(0.5 / (record["step"] - previous))
        assert record["examples_per_second"] == pytest.approx(16 * (record["step"] - previous) / 0.5)
    jaxdl.fit(nn.Dense(2), (x, y), loss="softmax_cross_entropy", epochs=1, batch_size=16, progress=False,
              workdir=tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["kind"] == "train"]
    assert train and all(r["examples_per_second"] > 0 and r["step_seconds"] > 0 for r in train)


def _data(n=96):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)


def test_flops_per_second_is_the_steps_cost_analysis_over_the_intervals_time_and_mfu_its_share():
    records = Records()
    # A Throughput among the hooks replaces fit's own: here with a fake clock, rate and memory.
    meter = Throughput(Clock(0.25), rate=lambda device: 1e9, memory=lambda devices: {"device_memory_bytes": len(devices)})
    _, state, step, eval_step, _ = small_setup()
    compiled = compile_train_step(step)
    result = fit(state, train_step=compiled, eval_step=compile_eval_step(eval_step), train_data=blobs(64),
                 batch_size=16, num_epochs=2, progress=False, hooks=[meter, records], log_every=2)
    batch = jax.device_put(next(train_batches(blobs(64), 16, seed=0, epoch=0)))
    # XLA's own count of the program fit ran, read here without step_flops (which memoises what fit asked).
    reference = float(compiled.lower(jax.device_put(result.state), batch).cost_analysis()["flops"])
    assert reference > 0 and meter.flops == reference
    assert [r["step"] for r in records.records] == [2, 4, 6, 8]
    for record in records.records:
        assert record["flops_per_second"] == pytest.approx(reference * 2 / 0.25)  # 2 steps an interval
        assert record["mfu"] == pytest.approx(record["flops_per_second"] / 1e9)  # one device in use
        assert record["device_memory_bytes"] == 1


def test_a_steps_flops_are_analysed_once_per_argument_shapes():
    _, state, step, _, _ = small_setup()
    compiled = compile_train_step(step)

    class Counted:
        """The compiled step, counting its lowerings."""

        lowerings = 0

        def lower(self, *args):
            Counted.lowerings += 1
            return compiled.lower(*args)

    counted = Counted()
    batches = [jax.device_put(next(train_batches(blobs(64), n, seed=0, epoch=0))) for n in (16, 16, 8)]
    counts = [step_flops(counted, state, b) for b in batches]
    assert Counted.lowerings == 2  # the second 16-row batch reuses the first's analysis
    assert counts[0] == counts[1] > counts[2] > 0


def test_a_pmap_steps_flops_count_every_device_and_its_peak_every_devices_rate():
    parallel = make_parallel("pmap")
    n = parallel.data_parallel_size
    records = Records()
    meter = Throughput(Clock(0.5), rate=lambda device: 1e9)
    jaxdl.fit(nn.Dense(2), _data(), loss="softmax_cross_entropy", epochs=1, batch_size=32, progress=False,
              hooks=[meter, records], strategy="pmap")
    single = Throughput(Clock(0.5), rate=lambda device: 1e9)
    jaxdl.fit(nn.Dense(2), _data(), loss="softmax_cross_entropy", epochs=1, batch_size=32, progress=False,
              hooks=[single, Records()])
    assert len(meter.devices) == n > 1 and len(single.devices) == 1
    # The per-device program, counted n times, costs at least the single program (its all-reduce on top).
    assert meter.flops >= single.flops * 0.99
    assert records.records[-1]["mfu"] == pytest.approx(records.records[-1]["flops_per_second"] / (n * 1e9))


def test_fit_logs_throughput_norms_and_utilisation_to_metrics_jsonl(tmp_path):
    _, state, step, eval_step, _ = small_setup()
    fit(state, train_step=compile_train_step(step), eval_step=compile_eval_step(eval_step), train_data=blobs(48),
        batch_size=16, num_epochs=1, progress=False, workdir=tmp_path / "run", log_every=1)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if r["kind"] == "train"]
    assert len(train) == 3
    for record in train:
        assert record["flops_per_second"] > 0 and 0 < record["mfu"]
        assert record["grad_norm"] > 0 and record["update_norm"] > 0 and record["param_norm"] > 0


def test_step_norms_off_leaves_the_norms_out_of_the_logs_and_the_rest_in():
    records = [Records(), Records()]
    for hook, norms in zip(records, (True, False)):
        jaxdl.fit(nn.Dense(2), _data(), loss="softmax_cross_entropy", epochs=1, batch_size=32, progress=False,
                  hooks=[Throughput(Clock(0.5), rate=lambda device: 1e9), hook], step_norms=norms)
    with_norms, without = records[0].records[-1], records[1].records[-1]
    assert {"grad_norm", "update_norm", "param_norm"} <= set(with_norms)
    assert set(without) == set(with_norms) - {"grad_norm", "update_norm", "param_norm"}
    assert without["loss"] == with_norms["loss"]


def test_matmul_rate_is_measured_once_and_then_read_from_the_cache(monkeypatch):
    device = jax.local_devices()[0]
    first = matmul_rate(device, size=64)
    assert first > 0
    monkeypatch.setattr("jaxdl.training.step_cost._RATE_REPEATS", 0)  # a second measurement would give inf/0
    assert matmul_rate(device, size=64) == first


def test_device_memory_is_the_largest_reported_and_absent_where_none_is():
    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    assert device_memory([Device(None)]) is None
    assert device_memory(jax.local_devices()[:1]) is None  # XLA:CPU reports nothing
    reported = device_memory([Device({"bytes_in_use": 5, "peak_bytes_in_use": 9}), Device({"bytes_in_use": 7})])
    assert reported == {"device_memory_bytes": 7, "peak_device_memory_bytes": 9}
