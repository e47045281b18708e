"""Compiling steps for devices: the only module that names devices, meshes or ``pmap``.

A `Parallel` compiles the pure steps of `jaxdl.training.step` under one of three strategies:

* ``"jit"``: one device; the state is donated so parameters and optimizer state update in place.
* ``"pmap"``: classic data parallelism. The state is replicated with a leading device axis, each device
  gets ``batch / devices`` rows, and the step (built with ``axis_name=DATA_AXIS``) sums gradients and metrics
  across devices; BatchNorm statistics are synchronised over the devices (`jaxdl.nn.normalization`).
* ``"mesh"``: ``jax.jit`` over a `jax.sharding.Mesh` with axes ``("data", "model")``. The batch is sharded
  along ``data``; parameters are replicated except those a sharding rule (a regex on the parameter path and
  a `PartitionSpec`-like tuple) shards along ``model``. XLA inserts the collectives: the step code is the
  single-device one. Across hosts the mesh spans every process's devices and each process feeds only its rows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable, Sequence, TypeVar

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxdl.data.pipeline import Batch
from jaxdl.distributed.sharding import ShardingRule, check_sharding_rules, path_name
from jaxdl.nn import lowering
from jaxdl.nn.normalization import synchronized_batch_norm

# Any pytree state works (a State, a GAN state, stacked trial states): the strategies only place its leaves.
State = TypeVar("State")
STRATEGIES = ("auto", "jit", "pmap", "mesh")
DATA_AXIS = "data"
MODEL_AXIS = "model"


def _resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int) -> tuple[int, int]:
    shape = tuple(int(d) for d in mesh_shape)
    if len(shape) == 1:
        shape = shape + (1,)
    if len(shape) != 2 or shape.count(-1) > 1 or any(d == 0 or d < -1 for d in shape):
        raise ValueError(f"train.mesh_shape must be (data, model) with positive sizes and at most one -1, got {tuple(mesh_shape)}")
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"train.mesh_shape {tuple(mesh_shape)}: {num_devices} devices are not divisible by {known}")
        shape = tuple(num_devices // known if d == -1 else d for d in shape)
    if math.prod(shape) != num_devices:
        raise ValueError(f"train.mesh_shape {tuple(mesh_shape)} has {math.prod(shape)} devices but {num_devices} are "
                         f"visible; use (-1, model) to let the data axis take the rest")
    return shape


@dataclasses.dataclass(frozen=True)
class Parallel:
    """How the steps run on devices: the ``strategy`` and, for ``"mesh"``, the mesh and the sharding rules.

    Build one with `make_parallel`. The loop only calls `put_state`, `put_batch`, `get_state` and the
    compiled steps, so it is the same for every strategy.
    """

    strategy: str
    mesh: Mesh | None = None
    sharding_rules: tuple[ShardingRule, ...] = ()

    @property
    def axis_name(self) -> str | None:
        """The ``pmap`` axis the step must reduce over (None for ``jit`` and ``mesh``, where XLA does it)."""
        return DATA_AXIS if self.strategy == "pmap" else None

    @property
    def data_parallel_size(self) -> int:
        """How many ways each global batch is split: every batch size must be a multiple of it."""
        if self.strategy == "pmap":
            return jax.local_device_count() * jax.process_count()
        if self.strategy == "mesh":
            return self.mesh.shape[DATA_AXIS]
        return 1

    @functools.cached_property
    def _local_device_axis(self) -> NamedSharding:
        """``pmap``'s layout: a leading axis split over this process's devices (built once, not per batch)."""
        return NamedSharding(Mesh(np.array(jax.local_devices()), (DATA_AXIS,)), PartitionSpec(DATA_AXIS))

    # -- placing data -------------------------------------------------------------------------------------

    def check_batch_size(self, batch_size: int, what: str = "data.batch_size") -> None:
        """Raise a clear error when ``batch_size`` does not split evenly over the data-parallel devices."""
        n = self.data_parallel_size
        if batch_size % n:
            down, up = batch_size // n * n, -(-batch_size // n) * n
            raise ValueError(
                f"{what} = {batch_size} is not divisible by the {n} data-parallel devices of strategy {self.strategy!r}: "
                f"each device takes an equal share. Use a multiple of {n} such as {' or '.join(map(str, sorted({down, up} - {0})))}. "
                "(A data set need not divide: evaluation pads its last batch with masked rows to the full batch size.)")

    def host_rows(self, batch_size: int) -> slice:
        """The rows of a global batch that this process feeds (all of them on one host)."""
        if self.strategy == "jit" or jax.process_count() == 1:
            return slice(0, batch_size)
        per_host = batch_size // jax.process_count()
        return slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)

    def put_batch(self, batch: Batch) -> Batch:
        """Start moving this process's rows of a host batch to the devices (asynchronously)."""
        if self.strategy == "jit":
            return jax.device_put(batch)
        rows = jax.tree.leaves(batch)[0].shape[0]
        if self.strategy == "pmap":
            n = jax.local_device_count()
            if rows % n:
                self.check_batch_size(rows * jax.process_count(), "the batch size")
            return jax.device_put(jax.tree.map(lambda a: a.reshape((n, rows // n) + a.shape[1:]), batch),
                                  self._local_device_axis)
        if (rows * jax.process_count()) % self.data_parallel_size:
            self.check_batch_size(rows * jax.process_count(), "the batch size")
        sharding = NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)

    def state_shardings(self, state: State) -> Any:
        """For ``mesh``: the `NamedSharding` of every state leaf (replicated unless a sharding rule matches)."""
        rules = [(re.compile(pattern), spec) for pattern, spec in self.sharding_rules]

        def sharding(path, leaf) -> NamedSharding:
            name = path_name(path)
            for pattern, spec in rules:
                if pattern.search(name) and np.ndim(leaf) == len(spec):
                    return NamedSharding(self.mesh, PartitionSpec(*spec))
            return NamedSharding(self.mesh, PartitionSpec())

        return jax.tree_util.tree_map_with_path(sharding, state)

    def put_state(self, state: State) -> State:
        """Place a (host or single-device) state for the strategy: as is, replicated per device, or sharded."""
        if self.strategy == "jit":
            return jax.device_put(state)
        if self.strategy == "pmap":
            devices, sharding = jax.local_devices(), self._local_device_axis

            def replicate(leaf):
                leaf = np.asarray(jax.device_get(leaf))[None]
                return jax.make_array_from_single_device_arrays(
                    (len(devices),) + leaf.shape[1:], sharding, [jax.device_put(leaf, d) for d in devices])

            return jax.tree.map(replicate, state)
        # Built from each process's own copy of the host state: works across hosts, where a device_put cannot
        # reach the other processes' devices.
        def place(leaf, sharding):
            host = np.asarray(jax.device_get(leaf))
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return jax.tree.map(place, state, self.state_shardings(state))

    def to_host(self, tree: Any) -> Any:
        """Numpy copies of replicated device values (metrics, the step counter), also in multi-host runs,
        where a global array cannot be fetched whole but every process holds a full replica."""
        return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)) if isinstance(a, jax.Array) else a, tree)

    def get_state(self, state: State) -> State:
        """The one logical state behind a placed one (drops ``pmap``'s device axis), e.g. to save or return it."""
        if self.strategy == "pmap":
            return jax.tree.map(lambda a: a[0], state)
        return state

    # -- compiling steps ----------------------------------------------------------------------------------

    def compile_train_step(self, step: Callable) -> Callable:
        """Compile ``step(state, batch) -> (state, metrics)``; the state's buffers are donated. The convolution
        lowerings it uses are tuned (`jaxdl.nn.lowering.tune`) on its first call, before it is traced."""
        if self.strategy == "pmap":
            step = _synchronized(step)
            return _TunedFirst(step, jax.pmap(step, axis_name=DATA_AXIS, out_axes=(0, None), donate_argnums=0), DATA_AXIS)
        if self.strategy == "mesh":
            replicated = NamedSharding(self.mesh, PartitionSpec())
            return _TunedFirst(step, _ShardedStep(step, self, donate=True, metrics_sharding=replicated))
        return _TunedFirst(step, jax.jit(step, donate_argnums=0))

    def compile_eval_step(self, step: Callable) -> Callable:
        """Compile ``step(state, batch) -> metrics`` (nothing donated: the state is reused), tuned on first call."""
        if self.strategy == "pmap":
            step = _synchronized(step)
            return _TunedFirst(step, jax.pmap(step, axis_name=DATA_AXIS, out_axes=None), DATA_AXIS)
        if self.strategy == "mesh":
            return _TunedFirst(step, _ShardedStep(step, self, donate=False,
                                                  metrics_sharding=NamedSharding(self.mesh, PartitionSpec())))
        return _TunedFirst(step, jax.jit(step))


def _synchronized(step: Callable) -> Callable:
    """``step`` traced with BatchNorm statistics averaged over the ``pmap`` devices (one global batch's)."""
    @functools.wraps(step)
    def synchronized(*args: Any) -> Any:
        with synchronized_batch_norm(DATA_AXIS):
            return step(*args)

    return synchronized


class _TunedFirst:
    """A compiled step whose first call first tunes the pure ``step``'s convolution lowerings on the same
    arguments (traced abstractly, per device under ``pmap``), so the compiled program is traced with them."""

    def __init__(self, step: Callable, compiled: Callable, axis_name: str | None = None) -> None:
        self.step, self.compiled, self.axis_name, self.tuned = step, compiled, axis_name, False

    def __call__(self, *args: Any) -> Any:
        if not self.tuned:
            lowering.tune(self.step, *args, axis_name=self.axis_name)
            self.tuned = True
        return self.compiled(*args)

    def lower(self, *args: Any) -> Any:
        """The compiled step's `jax.stages.Lowered` for these arguments (after the first call: the cached trace)."""
        return self.compiled.lower(*args)


class _ShardedStep:
    """A step jitted with explicit state shardings; compiled on the first call, when the state's structure is known."""

    def __init__(self, step: Callable, parallel: Parallel, donate: bool, metrics_sharding: NamedSharding) -> None:
        self.step, self.parallel, self.donate, self.metrics_sharding = step, parallel, donate, metrics_sharding
        self.compiled = None

    def __call__(self, state: State, batch: Batch) -> Any:
        return self._jitted(state)(state, batch)

    def lower(self, state: State, batch: Batch) -> Any:
        """The step's `jax.stages.Lowered` over the mesh for these arguments."""
        return self._jitted(state).lower(state, batch)

    def _jitted(self, state: State) -> Callable:
        if self.compiled is None:
            shardings = self.parallel.state_shardings(state)
            batch_sharding = NamedSharding(self.parallel.mesh, PartitionSpec(DATA_AXIS))
            out = (shardings, self.metrics_sharding) if self.donate else self.metrics_sharding
            self.compiled = jax.jit(self.step, in_shardings=(shardings, batch_sharding), out_shardings=out,
                                    donate_argnums=0 if self.donate else ())
        return self.compiled


def make_parallel(strategy: str = "auto", mesh_shape: Sequence[int] = (-1, 1),
                  sharding_rules: Sequence[ShardingRule] = (), params: Any = None) -> Parallel:
    """Choose how to run: ``"auto"`` is ``"mesh"`` when more than one device is visible, else ``"jit"``.

    ``mesh_shape`` is ``(data, model)`` (``-1``: the rest of the devices); ``sharding_rules`` are checked
    against ``params`` when given.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown parallel strategy {strategy!r}; valid strategies are {list(STRATEGIES)}")
    if strategy == "auto":
        strategy = "mesh" if jax.device_count() > 1 else "jit"
    if strategy != "mesh":
        if sharding_rules:
            raise ValueError(f"sharding rules need strategy 'mesh', got {strategy!r}")
        return Parallel(strategy)
    shape = _resolve_mesh_shape(mesh_shape, jax.device_count())
    # Auto axes: XLA propagates shardings through the unchanged single-device step (Explicit axes, make_mesh's
    # default in this JAX, would make sharding part of every array's type and reject plain reshapes).
    mesh = jax.make_mesh(shape, (DATA_AXIS, MODEL_AXIS), axis_types=(AxisType.Auto, AxisType.Auto))
    rules = check_sharding_rules(sharding_rules, params, mesh) if params is not None else tuple(
        (r[0], tuple(r[1])) for r in sharding_rules)
    return Parallel(strategy, mesh, rules)


def compile_train_step(step: Callable, strategy: str = "jit") -> Callable:
    """Compile a train step under ``strategy`` with default mesh settings (see `Parallel.compile_train_step`)."""
    return make_parallel(strategy).compile_train_step(step)


def compile_eval_step(step: Callable, strategy: str = "jit") -> Callable:
    """Compile an eval step under ``strategy`` with default mesh settings (see `Parallel.compile_eval_step`)."""
    return make_parallel(strategy).compile_eval_step(step)


def put_batch(batch: Batch) -> Batch:
    """Place a host batch on the default device (asynchronously): the ``jit`` strategy's `Parallel.put_batch`."""
    return jax.device_put(batch)


