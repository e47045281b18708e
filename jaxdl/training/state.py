"""The training state: one pytree of arrays, nothing else.

Keeping functions (model, optimizer) out of the state makes it plain data: it is donated to the step,
checkpointed by Orbax as is, and compared leaf by leaf in tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.training.precision import DynamicLossScale, compute_dtype
from jaxdl.training.weight_average import copy_params

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """``step`` (int32 scalar), ``params``, ``batch_stats`` (``{}`` without BatchNorm), ``opt_state``,
    ``rng``, the run's base key (each step derives its dropout key as ``fold_in(rng, step)``),
    ``loss_scale``, a `DynamicLossScale` in float16 training (None otherwise), and ``average``, the moving
    average of the parameters evaluation uses (`jaxdl.training.weight_average`; None when not kept)."""

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array
    loss_scale: DynamicLossScale | None = None
    average: PyTree | None = None

    def variables(self) -> dict[str, PyTree]:
        """The Flax variables for ``model.apply``: params and, when present, batch_stats."""
        return {"params": self.params, "batch_stats": self.batch_stats} if self.batch_stats else {"params": self.params}

    def inference_variables(self) -> dict[str, PyTree]:
        """The variables to evaluate and predict with: `variables` with the parameters' moving average in
        place of the parameters when the state keeps one."""
        variables = self.variables()
        return variables if self.average is None else dict(variables, params=self.average)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Shape (without the batch axis) and dtype of the model input the state was initialised for."""

    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, x: np.ndarray | jax.Array) -> "InputSpec":
        """The spec of a batch ``x: [batch, ...]``."""
        return cls(tuple(int(d) for d in x.shape[1:]), str(np.dtype(x.dtype)))

    def check(self, x: np.ndarray | jax.Array, what: str = "batch['x']") -> None:
        """Raise ``ValueError`` naming the mismatch when ``x: [batch, ...]`` does not fit this spec."""
        got_shape, got_dtype = tuple(x.shape[1:]), str(np.dtype(x.dtype))
        if got_shape != self.shape:
            raise ValueError(
                f"{what} has shape {tuple(x.shape)} (per example {got_shape}) but the model was built for "
                f"per-example shape {self.shape}; reshape the data to (batch, {', '.join(map(str, self.shape))})"
            )
        if got_dtype != self.dtype:
            raise ValueError(f"{what} has dtype {got_dtype} but the model expects {self.dtype}; cast with .astype('{self.dtype}')")


def input_spec_of(x: Any) -> InputSpec | dict[str, InputSpec]:
    """The `InputSpec` of a batch ``x`` (one per key when ``x`` is a dict of arrays)."""
    return {k: InputSpec.of(v) for k, v in x.items()} if isinstance(x, dict) else InputSpec.of(x)


def check_inputs(spec: InputSpec | dict[str, InputSpec], x: Any, what: str = "batch['x']") -> None:
    """Raise ``ValueError`` when ``x`` (an array or a dict of arrays) does not fit ``spec``, naming the mismatch."""
    if isinstance(spec, dict):
        if not isinstance(x, dict) or set(x) != set(spec):
            got = sorted(x) if isinstance(x, dict) else f"one array of shape {tuple(x.shape)}"
            raise ValueError(f"{what} must be a dict with keys {sorted(spec)}, got {got}")
        for key, sub in spec.items():
            sub.check(x[key], f"{what}[{key!r}]")
    elif isinstance(x, dict):
        raise ValueError(f"{what} must be one array of per-example shape {spec.shape}, got a dict with keys {sorted(x)}")
    else:
        spec.check(x, what)


def count_params(params: PyTree) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))


def _compile_once(fn: Any, *args: Any) -> Any:
    """``jax.jit(fn)(*args)`` for a program that runs once: on CPU compiled at LLVM optimisation level 1,
    because the random-number code of initialisers (threefry) takes LLVM's full optimisation 5-10x longer
    than level 1 (24 s against 2.3 s for a small U-Net, 5.6 s against 1.3 s for the MNIST CNN). The values
    are bitwise the same (tested); level 0 is not used, it miscompiles them."""
    compiled = jax.jit(fn)
    if jax.default_backend() != "cpu":
        return compiled(*args)
    return compiled.lower(*args).compile(compiler_options={"xla_backend_optimization_level": "1"})(*args)


def init_variables(model: nn.Module, rngs: dict[str, jax.Array], sample_x: Any, **kwargs: Any) -> PyTree:
    """``model.init(rngs, sample_x, **kwargs)``, compiled as one program that runs once (see `_compile_once`)."""
    return _compile_once(lambda x: model.init(rngs, x, **kwargs), sample_x)


def _initial_variables(model: nn.Module, sample_x: Any, root: jax.Array) -> PyTree:
    """What ``model.init`` gives for the run key ``root``: the parameter and dropout keys split from it."""
    params_key, dropout_key, _ = jax.random.split(root, 3)
    return model.init({"params": params_key, "dropout": dropout_key}, sample_x, train=False)


def _kept(variables: PyTree) -> dict[str, PyTree]:
    return {c: variables[c] for c in ("params", "batch_stats") if c in variables and variables[c]}


def abstract_variables(model: nn.Module, sample_x: Any) -> dict[str, PyTree]:
    """The shapes and dtypes (`jax.ShapeDtypeStruct` leaves) of the variables `create_train_state` gives
    ``model``, ``{"params"[, "batch_stats"]}``, computed without running (or compiling) the initialisers."""
    return _kept(jax.eval_shape(lambda x: _initial_variables(model, x, jax.random.PRNGKey(0)), sample_x))


def initialise_missing(model: nn.Module, sample_x: Any, seed: int, variables: dict[str, PyTree]) -> dict[str, PyTree]:
    """``variables`` (shaped as `abstract_variables`) with every `jax.ShapeDtypeStruct` leaf replaced by the
    value `create_train_state` gives it for ``seed``, and every other leaf kept: how a run starting from given
    weights (a pretrained backbone, an earlier stage) initialises the rest. The initialisers run as one
    program that returns only the missing leaves, so XLA drops the others' random-number code: a backbone of
    millions of given weights costs nothing to initialise, and nothing is compiled when nothing is missing."""
    leaves, tree = jax.tree.flatten(variables)
    missing = [i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.ShapeDtypeStruct)]
    if missing:
        def only_missing(x, root):
            initialised = jax.tree.leaves(_kept(_initial_variables(model, x, root)))
            return [initialised[i] for i in missing]
        values = _compile_once(only_missing, sample_x, jax.random.PRNGKey(seed))
        for i, value in zip(missing, values):
            if (value.shape, value.dtype) != (leaves[i].shape, leaves[i].dtype):  # a tree not shaped like the model's
                raise ValueError(f"variables do not have the model's structure: leaf {i} is {leaves[i].shape} "
                                 f"{leaves[i].dtype}, the model initialises {value.shape} {value.dtype}")
            leaves[i] = value
    return jax.tree.unflatten(tree, leaves)


def _state_from_key(model: nn.Module, tx: optax.GradientTransformation, sample_x: Any, root: jax.Array,
                    precision: str, average: bool) -> TrainState:
    step_key = jax.random.split(root, 3)[2]
    variables = _initial_variables(model, sample_x, root)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=step_key,
        loss_scale=DynamicLossScale.create() if precision == "float16" else None,
        average=copy_params(params) if average else None,
    )


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, sample_x: jax.Array, seed: int,
                       precision: str = "float32", average: bool = False) -> TrainState:
    """Initialise parameters (and BatchNorm statistics) for ``sample_x: [batch, ...]`` and the optimizer state.

    Parameters are float32 whatever the compute ``precision``; float16 adds a dynamic loss scale;
    ``average`` starts the parameters' moving average (for a step made with ``ema_decay``) at their copy.
    Everything random comes from ``seed``: the same seed gives bitwise-equal states.
    """
    compute_dtype(precision)  # fails early on an unknown name
    return _compile_once(lambda x, root: _state_from_key(model, tx, x, root, precision, average), sample_x,
                         jax.random.PRNGKey(seed))


def train_state_from(variables: dict[str, PyTree], tx: optax.GradientTransformation, seed: int = 0,
                     precision: str = "float32", average: bool = False) -> TrainState:
    """A fresh `TrainState` (step 0, new optimizer state for ``tx``) around given ``variables``
    (``{"params", ["batch_stats"]}``: pretrained weights, an earlier stage's): what a second stage of training
    or a new optimizer starts from. The run's key comes from ``seed`` as in `create_train_state`."""
    compute_dtype(precision)
    if "params" not in variables:
        raise ValueError(f"variables must hold 'params', got collections {sorted(variables)}")
    params = jax.tree.map(jnp.asarray, variables["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=jax.tree.map(jnp.asarray, variables.get("batch_stats", {})), opt_state=tx.init(params),
                      rng=jax.random.split(jax.random.PRNGKey(seed), 3)[2],
                      loss_scale=DynamicLossScale.create() if precision == "float16" else None,
                      average=copy_params(params) if average else None)


def create_train_states(model: nn.Module, tx: optax.GradientTransformation, sample_x: jax.Array, seeds: Any,
                        precision: str = "float32", average: bool = False) -> TrainState:
    """The states `create_train_state` makes for each of ``seeds``, stacked on a leading axis (for vmapped
    ensembles): one vmapped program over the seeds' keys, so one compile whatever their number, and each
    slice bitwise equal to ``create_train_state(..., seed)``."""
    compute_dtype(precision)
    roots = jnp.stack([jax.random.PRNGKey(int(seed)) for seed in seeds])
    return _compile_once(lambda x, keys: jax.vmap(lambda root: _state_from_key(model, tx, x, root, precision, average))(keys),
                         sample_x, roots)
