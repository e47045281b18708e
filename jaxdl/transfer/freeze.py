"""Which parameters train, and how fast: transfer modes as optax parameter groups.

Every parameter gets a label: ``"head"`` (the new layers, base learning rate), ``"backbone"`` (pretrained
layers that train, at ``backbone_lr_scale`` times the base rate) or ``"frozen"``. `transfer_optimizer`
gives each label its own optax transformation with ``optax.multi_transform``; frozen parameters get
``optax.set_to_zero()``, so their updates are exactly zero (they stay bitwise unchanged) and the optimizer
keeps no moments for them (multi_transform masks them out of the other groups' states).

Modes: ``fine_tune`` (everything trains, backbone slower), ``feature_extraction`` (the whole backbone
frozen), ``freeze_first`` (the backbone's input layers and first ``freeze_blocks`` blocks frozen, the rest
fine-tuned), ``scratch`` (same architecture, random weights, one learning rate: the baseline).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import optax

from jaxdl.util.tree import path_to_str

MODES = ("fine_tune", "feature_extraction", "freeze_first", "scratch")
BACKBONE = "backbone"
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


def parameter_labels(params: Any, mode: str, freeze_blocks: int = 0) -> Any:
    """A pytree like ``params`` of ``"head"``, ``"backbone"`` or ``"frozen"`` (see the module docstring)."""
    check_mode(mode)
    if mode == "freeze_first" and freeze_blocks < 1:
        raise ValueError(f"transfer mode 'freeze_first' needs freeze_blocks >= 1, got {freeze_blocks}")
    if BACKBONE not in params:
        raise ValueError(f"the model has no '{BACKBONE}' parameters to transfer into; it has {sorted(params)}")

    def label(path, _) -> str:
        names = tuple(path_to_str((k,)) for k in path)
        if names[0] != BACKBONE or mode == "scratch":
            return "head"
        if mode == "feature_extraction" or (mode == "freeze_first" and block_index(names[1:]) < freeze_blocks):
            return "frozen"
        return "backbone"

    return jax.tree_util.tree_map_with_path(label, params)


def transfer_optimizer(make_tx: Callable[[float], optax.GradientTransformation], learning_rate: float,
                       backbone_lr_scale: float, labels: Any) -> optax.GradientTransformation:
    """One optimizer per label: ``make_tx(learning_rate)`` for the head, ``make_tx(learning_rate *
    backbone_lr_scale)`` for a training backbone, ``set_to_zero`` (no state) for frozen parameters."""
    if not 0 < backbone_lr_scale:
        raise ValueError(f"transfer.backbone_lr_scale must be > 0, got {backbone_lr_scale}")
    used = set(jax.tree.leaves(labels))
    transforms = {"head": make_tx(learning_rate), "frozen": optax.set_to_zero()}
    if "backbone" in used:
        transforms["backbone"] = make_tx(learning_rate * backbone_lr_scale)
    return optax.multi_transform(transforms, labels)
