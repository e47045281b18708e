"""Low-rank adaptation (LoRA): a frozen model's kernels plus trained low-rank updates, ``W + (alpha / rank) A B``.

The adapters live beside the model's own parameters, under ``params["lora"]`` in the same nesting as the
kernels they adapt (``params["lora"]["backbone"]["layer_0"]["attention"]["query"]["kernel"] = {"a", "b"}``),
so the model itself is unchanged: any Linen module (or NNX module through `jaxdl.models.adapter`) is adapted
as it is, and `merge_adapters` turns the parameters back into the plain model's, each adapted kernel replaced
by its merged value, for prediction and export. A kernel of any rank is adapted as a matrix (`matrix_shape`:
a convolution's ``[h * w * in, out]``, a multi-head projection's ``[in, heads * dim]``). ``a`` starts
random (LeCun normal over its input dimension) and ``b`` at zero, so training starts from the pretrained model
exactly. `jaxdl.transfer.freeze` labels the adapters ``"adapter"`` and every other backbone parameter
``"frozen"``: only the adapters and the head train.

The kernels are merged inside the step, so the gradient reaches the adapters through the merged kernel: the
forward and backward passes cost what full fine-tuning costs (plus one small ``A @ B`` per kernel), while the
optimizer keeps moments for, and updates, the adapters alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp

from jaxdl.util.tree import path_to_str

LORA = "lora"


@dataclasses.dataclass(frozen=True)
class LowRankAdapted:
    """``model`` with low-rank adapters on the kernels whose parameter path (``backbone/layer_0/attention/query/
    kernel``) matches ``targets`` (a regex, searched): ``init`` adds them, ``apply`` merges them first. Anything
    jaxdl calls a model with (``train``, ``rngs``, ``mutable``, ``method``) passes through."""

    model: Any
    rank: int = 8
    alpha: float = 16.0
    targets: str = r"^backbone/.*kernel$"

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"transfer.lora_rank must be >= 1, got {self.rank}")
        if not self.alpha > 0:
            raise ValueError(f"transfer.lora_alpha must be > 0, got {self.alpha}")
        try:
            re.compile(self.targets)
        except re.error as exc:
            raise ValueError(f"transfer.lora_targets {self.targets!r} is not a regular expression: {exc}") from exc

    @property
    def scale(self) -> float:
        """``alpha / rank``: the adapters' product is scaled by it, so ``alpha`` is the rank-independent rate knob."""
        return self.alpha / self.rank

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The model's variables with adapters added under ``params["lora"]`` (``ValueError`` when ``targets``
        matches no kernel, listing the kernels there are)."""
        variables = dict(self.model.init(rngs, *args, **kwargs))
        key = rngs["params"] if isinstance(rngs, dict) else rngs
        variables["params"] = add_adapters(variables["params"], self.rank, self.targets, jax.random.fold_in(key, 7))
        return variables

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        """``model.apply`` with every adapted kernel merged (``W + scale * A @ B``) first."""
        variables = dict(variables)
        variables["params"] = merge_adapters(variables["params"], self.scale)
        return self.model.apply(variables, *args, **kwargs)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``[inputs, outputs]`` matrix a kernel of ``shape`` is adapted as: of the splits of its dimensions into
    leading (inputs) and trailing (outputs) ones, the one with the fewest adapter parameters (``inputs +
    outputs``), the later on a tie. A Dense kernel stays as it is, a convolution's ``[h, w, in, out]`` becomes
    ``[h * w * in, out]``, a multi-head projection's ``[in, heads, dim]`` ``[in, heads * dim]``."""
    best: tuple[int, int] | None = None
    for cut in range(1, len(shape)):
        inputs, outputs = math.prod(shape[:cut]), math.prod(shape[cut:])
        if best is None or inputs + outputs <= sum(best):
            best = (inputs, outputs)
    assert best is not None, "kernels have at least two dimensions"
    return best


def add_adapters(params: Any, rank: int, targets: str, key: jax.Array) -> dict[str, Any]:
    """``params`` with ``{"a": [in, rank], "b": [rank, out]}`` under ``params["lora"]`` for every kernel of at
    least two dimensions whose path matches ``targets``; ``b`` is zero, so the adapted model starts equal."""
    pattern = re.compile(targets)
    params = dict(params)
    if LORA in params:
        raise ValueError(f"the model already has a top-level {LORA!r} parameter subtree; adapters go there")
    adapters: dict[str, Any] = {}
    kernels = []
    for index, (path, leaf) in enumerate(jax.tree_util.tree_leaves_with_path(params)):
        names = tuple(path_to_str((k,)) for k in path)
        if jnp.ndim(leaf) < 2:
            continue
        kernels.append("/".join(names))
        if not pattern.search("/".join(names)):
            continue
        inputs, outputs = matrix_shape(tuple(jnp.shape(leaf)))
        a = jax.random.normal(jax.random.fold_in(key, index), (inputs, rank), jnp.float32) / jnp.sqrt(inputs)
        node = adapters
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = {"a": a.astype(leaf.dtype), "b": jnp.zeros((rank, outputs), leaf.dtype)}
    if not adapters:
        raise ValueError(f"transfer.lora_targets {targets!r} matches no kernel; the model's kernels are {kernels[:12]}"
                         + (f" and {len(kernels) - 12} more" if len(kernels) > 12 else ""))
    params[LORA] = adapters
    return params


def merge_adapters(params: Any, scale: float) -> dict[str, Any]:
    """The plain model's parameters: ``params`` without ``params["lora"]``, each adapted kernel replaced by
    ``W + scale * (A @ B)`` reshaped to ``W``'s shape. Parameters without adapters come back as they are."""
    params = dict(params)
    adapters = params.pop(LORA, None)
    if adapters is None:
        return params

    def merge(node: Any, adapter: Any) -> Any:
        if isinstance(adapter, dict) and set(adapter) == {"a", "b"} and not isinstance(node, dict):
            update = (adapter["a"] @ adapter["b"]).reshape(jnp.shape(node)) * scale
            return node + update.astype(node.dtype)
        return {**node, **{name: merge(node[name], sub) for name, sub in adapter.items()}}

    return merge(params, adapters)


def adapted_parts(model: Any, variables: Any) -> tuple[Any, Any]:
    """``(plain model, its variables)`` of an adapted model, the kernels merged: what prediction and export
    use (no adapter arithmetic in the served program). Any other model comes back as it is."""
    if not isinstance(model, LowRankAdapted):
        return model, variables
    return model.model, {**variables, "params": merge_adapters(variables["params"], model.scale)}
