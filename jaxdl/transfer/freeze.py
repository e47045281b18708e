"""Which parameters train, and how fast: transfer modes as optax parameter groups.

Every parameter gets a label: ``"head"`` (the new layers, base learning rate), ``"backbone"`` (pretrained
layers that train, at ``backbone_lr_scale`` times the base rate) or ``"frozen"``. `transfer_optimizer`
gives each label its own optax transformation with ``optax.multi_transform``; frozen parameters get
``optax.set_to_zero()``, so their updates are exactly zero (they stay bitwise unchanged) and the optimizer
keeps no moments for them (multi_transform masks them out of the other groups' states).

Modes: ``fine_tune`` (everything trains, backbone slower), ``feature_extraction`` (the whole backbone
frozen), ``freeze_first`` (the backbone's input layers and first ``freeze_blocks`` blocks frozen, the rest
fine-tuned), ``train_top`` (only the backbone's last ``top_blocks`` blocks and the layers after them train:
the second stage of the classic recipe), ``scratch`` (same architecture, random weights, one learning rate:
the baseline), ``lora`` (the whole backbone frozen, low-rank adapters on its kernels trained at the head's
rate, labelled ``"adapter"``: `jaxdl.transfer.lora`). `Freeze` carries a mode and its numbers for `jaxdl.fit`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import jax
import optax

from jaxdl.transfer.lora import LORA
from jaxdl.util.tree import path_to_str

MODES = ("fine_tune", "feature_extraction", "freeze_first", "train_top", "scratch", "lora")
BACKBONE = "backbone"
LABELS = ("head", "backbone", "adapter", "frozen")
# The numbered stages of the backbones jaxdl builds: MobileNet "block_3", BERT "layer_3", ConvNet "ConvBlock_3".
_BLOCK = re.compile(r"^(?:block|layer|ConvBlock)_(\d+)$")
# Layers that come before block 0: a MobileNet's stem, BERT's embeddings.
_INPUT_LAYERS = ("stem", "word_embeddings", "position_embeddings", "token_type_embeddings", "embeddings_norm")


def check_mode(mode: str) -> str:
    """``mode`` if it is a known transfer mode (``ValueError`` listing them otherwise)."""
    if mode not in MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; valid modes are {list(MODES)}")
    return mode


def block_index(path: tuple[str, ...]) -> float:
    """Depth of a backbone parameter: -1 for input layers, k inside block k, infinity after the last block."""
    for part in path:
        match = _BLOCK.match(part)
        if match:
            return int(match[1])
        if part in _INPUT_LAYERS:
            return -1
    return float("inf")


def num_blocks(params: Any) -> int:
    """How many numbered blocks the ``backbone`` subtree of ``params`` has (one more than the deepest index)."""
    depths = [block_index(tuple(path_to_str((k,)) for k in path))
              for path, _ in jax.tree_util.tree_leaves_with_path(params.get(BACKBONE, {}))]
    finite = [d for d in depths if d != float("inf")]
    return int(max(finite)) + 1 if finite else 0


def frozen_below(params: Any, mode: str, freeze_blocks: int = 0, top_blocks: int = 0) -> int:
    """The number of leading backbone blocks a mode freezes (0 for fine_tune and scratch; every block for
    feature_extraction): what a backbone with a ``frozen_blocks`` field runs in inference mode."""
    if mode == "freeze_first":
        return freeze_blocks
    if mode == "train_top":
        return max(num_blocks(params) - top_blocks, 0)
    return num_blocks(params) if mode == "feature_extraction" else 0


def parameter_labels(params: Any, mode: str, freeze_blocks: int = 0, top_blocks: int = 0) -> Any:
    """A pytree like ``params`` of ``"head"``, ``"backbone"`` or ``"frozen"`` (see the module docstring)."""
    check_mode(mode)
    if mode == "freeze_first" and freeze_blocks < 1:
        raise ValueError(f"transfer mode 'freeze_first' needs freeze_blocks >= 1, got {freeze_blocks}")
    if BACKBONE not in params:
        raise ValueError(f"the model has no '{BACKBONE}' parameters to transfer into; it has {sorted(params)}")
    if mode == "train_top":
        blocks = num_blocks(params)
        if not 1 <= top_blocks <= blocks:
            raise ValueError(f"transfer mode 'train_top' needs 1 <= top_blocks <= {blocks} (the backbone's blocks), "
                             f"got {top_blocks}")
    first_trained = {"freeze_first": freeze_blocks, "train_top": frozen_below(params, mode, top_blocks=top_blocks)}

    def label(path, _) -> str:
        names = tuple(path_to_str((k,)) for k in path)
        if names[0] == LORA:
            return "adapter"
        if mode == "lora" and names[0] == BACKBONE:
            return "frozen"
        if names[0] != BACKBONE or mode == "scratch":
            return "head"
        if mode == "feature_extraction" or (mode in first_trained and block_index(names[1:]) < first_trained[mode]):
            return "frozen"
        return "backbone"

    return jax.tree_util.tree_map_with_path(label, params)


@dataclasses.dataclass(frozen=True)
class Freeze:
    """What of a ``backbone`` trains in `jaxdl.fit`: a transfer ``mode`` (see the module docstring), its
    ``freeze_blocks`` (freeze_first) or ``top_blocks`` (train_top), and the backbone's rate as
    ``backbone_lr_scale`` times the head's; for ``lora``, the adapters' ``lora_rank``, ``lora_alpha`` and the
    regex of the kernel paths they adapt, ``lora_targets``. ``Freeze()`` trains the head alone."""

    mode: str = "feature_extraction"
    freeze_blocks: int = 0
    top_blocks: int = 0
    backbone_lr_scale: float = 0.1
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = r"^backbone/.*kernel$"

    def labels(self, params: Any) -> Any:
        """`parameter_labels` of ``params`` for this choice."""
        return parameter_labels(params, self.mode, self.freeze_blocks, self.top_blocks)


def transfer_optimizer(make_tx: Callable[[float], optax.GradientTransformation], learning_rate: float,
                       backbone_lr_scale: float, labels: Any) -> optax.GradientTransformation:
    """One optimizer per label: ``make_tx(learning_rate)`` for the head (and LoRA adapters), ``make_tx(learning_rate *
    backbone_lr_scale)`` for a training backbone, ``set_to_zero`` (no state) for frozen parameters."""
    if not 0 < backbone_lr_scale:
        raise ValueError(f"transfer.backbone_lr_scale must be > 0, got {backbone_lr_scale}")
    used = set(jax.tree.leaves(labels))
    transforms = {"head": make_tx(learning_rate), "frozen": optax.set_to_zero()}
    if "adapter" in used:
        transforms["adapter"] = transforms["head"]
    if "backbone" in used:
        transforms["backbone"] = make_tx(learning_rate * backbone_lr_scale)
    return optax.multi_transform(transforms, labels)
