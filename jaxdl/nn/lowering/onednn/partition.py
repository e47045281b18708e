"""How jaxdl's oneDNN primitives lower: batch-local over a device mesh, compiled once when called eagerly.

Over a device mesh each custom call stays on its devices' part of the batch: operands and results shaped like
images keep the batch dimension's sharding, everything else (kernels, say) is replicated, and a result summed
over the batch (a kernel's gradient) is summed across the batch's devices by the caller's local function.
Without these rules XLA's partitioner would gather the whole batch onto every device around a custom call it
knows nothing about (and `to_front` lines up a vmapped primitive's operands). The rules are `custom_partitioning` rules applied when a primitive is lowered, so the
primitive must be known to need devices during lowering (a private registry of jax's, as for
custom_partitioning's own primitive); where that registry is missing a sharded program still runs, gathered.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.core import Primitive
from jax.interpreters import mlir
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.nn.lowering.onednn import library

try:
    from jax._src import dispatch as _dispatch
    _DEVICES_AT_LOWERING = _dispatch.prim_requires_devices_during_lowering
except (ImportError, AttributeError):
    _DEVICES_AT_LOWERING = None


def batch_sharding(mesh, arg_shape) -> NamedSharding:
    """The sharding of an operand's leading (batch) dimension as the partitioner gives it, the rest whole."""
    spec = arg_shape.sharding.spec if isinstance(arg_shape.sharding, NamedSharding) else ()
    return NamedSharding(mesh, PartitionSpec(spec[0] if len(spec) else None))


def replicated(mesh) -> NamedSharding:
    """Whole on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def rule(call: Callable, static_argnums: Sequence[int], sharding_rule: str, partition: Callable,
         infer: Callable) -> custom_partitioning:
    """``call`` partitioned by ``partition`` under the Shardy ``sharding_rule``: every factor but the batch
    ``n`` must stay whole on each device (listed in the order the rule names them, as Shardy requires), and
    ``n`` is a reduction factor where no result has it."""
    factors = list(dict.fromkeys(sharding_rule.replace(",", " ").replace("->", " ").split()))
    partitioned = custom_partitioning(call, static_argnums=tuple(static_argnums))
    partitioned.def_partition(partition=partition, infer_sharding_from_operands=infer, sharding_rule=sharding_rule,
                              need_replication_factors=tuple(f for f in factors if f != "n"),
                              reduction_factors=("n",) if "n" not in sharding_rule.split("->")[1] else ())
    return partitioned


def batch_local(call: Callable, static_argnums: Sequence[int], sharding_rule: str, operands: str,
                results: str) -> custom_partitioning:
    """``call`` run on each device's part of the batch. ``operands`` and ``results`` hold a letter per
    array: ``b`` batched (sharded as the first operand's leading dimension), ``r`` replicated."""
    def shardings(mesh, arg_shapes, letters):
        batch = batch_sharding(mesh, arg_shapes[0])
        return tuple(batch if letter == "b" else replicated(mesh) for letter in letters)

    def result_shardings(mesh, arg_shapes):
        out = shardings(mesh, arg_shapes, results)
        return out if len(out) > 1 else out[0]

    def partition(*static_and_shapes):
        *static, mesh, arg_shapes, _ = static_and_shapes
        return (mesh, functools.partial(call, *static), result_shardings(mesh, arg_shapes),
                shardings(mesh, arg_shapes, operands))

    def infer(*static_and_shapes):
        *_, mesh, arg_shapes, _ = static_and_shapes
        return result_shardings(mesh, arg_shapes)
    return rule(call, static_argnums, sharding_rule, partition, infer)


def to_front(value: jax.Array, dim: int | None, size: int) -> jax.Array:
    """An operand of a batching rule with its mapped axis ``dim`` first (moved there, or of ``size`` copies
    where the operand is not mapped): how every oneDNN primitive's vmap rule lines its operands up."""
    return jnp.broadcast_to(value, (size, *value.shape)) if dim is None else jnp.moveaxis(value, dim, 0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _bind_compiled(primitive: Primitive, params: tuple, *args: jax.Array):
    return primitive.bind(*args, **dict(params))


def register(primitive: Primitive, partitioned: Callable, plain: Callable, multiple_results: bool = False) -> None:
    """Lower ``primitive`` on the CPU through ``partitioned`` (a function of the primitive's operands and
    parameters calling a `custom_partitioning`), or through ``plain`` (the bare custom call) where jax has no
    registry of primitives that need devices at lowering; outside `jax.jit` the primitive runs compiled, one
    program per parameters and shapes (a new function per call would retrace and recompile every call)."""
    if _DEVICES_AT_LOWERING is not None:
        _DEVICES_AT_LOWERING.add(primitive)
    lower = partitioned if _DEVICES_AT_LOWERING is not None else plain

    def loaded(*args, **params):  # the custom call's handler must be registered before XLA compiles it
        library.load()
        return lower(*args, **params)
    primitive.def_impl(lambda *args, **params: _bind_compiled(primitive, tuple(sorted(params.items())), *args))
    mlir.register_lowering(primitive, mlir.lower_fun(loaded, multiple_results=multiple_results), platform="cpu")
