"""PyTorch or safetensors state dicts -> Flax variables, by module-name rules and the target's own layout.

A rule maps a PyTorch module name (a regular expression, its groups usable in the target) to a Flax
module path: ``{"features\\.(\\d+)": "block_{0}", "fc": "head"}``. What a module is comes from its
tensors and from the Flax variables at the target path, so one rule covers a whole layer:

- ``Linear`` -> ``Dense``/``DenseGeneral``: weight ``(out, in)`` transposed to ``(in, out)``, reshaped to a
  ``DenseGeneral`` kernel such as ``(in, heads, head_dim)`` in row-major order (PyTorch's head split);
- ``Conv1d/2d/3d`` -> ``Conv``: ``(O, I/groups, *k)`` to ``(*k, I/groups, O)``;
- ``BatchNorm`` -> ``scale``, ``bias`` and ``batch_stats`` ``mean``/``var`` (``num_batches_tracked`` dropped);
  ``LayerNorm`` -> ``scale``, ``bias``; ``Embedding`` -> ``embedding``;
- ``MultiheadAttention`` -> `jaxdl.nn.attention.MultiHeadAttention`: ``in_proj_weight`` split into
  ``query``/``key``/``value`` (or ``q/k/v_proj_weight``), ``out_proj`` -> ``out``;
- ``LSTM``/``GRU``/``RNN`` -> jaxdl's cells (`jaxdl.nn.recurrent`): the target may name ``{layer}`` and
  ``{direction}`` ("forward"/"backward"); gate orders agree (LSTM i, f, g, o; GRU r, z, n), so weights only
  transpose; LSTM and RNN cells carry one bias, PyTorch's ``bias_ih + bias_hh``; GRU keeps both, as
  PyTorch's ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))`` needs.

Strict as `jaxdl.transfer.mapping.fill`: a tensor no rule maps, a variable nothing fills or a shape that
differs is an error naming them. `read_weights_file` reads ``.safetensors`` or ``.pt``/``.pth`` without
running code (`jaxdl.transfer.torch_checkpoint`).
"""

from __future__ import annotations

import pathlib
import re
import string
from typing import Any, Mapping

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxdl.transfer.mapping import _listed

Path = tuple[str, ...]
_RECURRENT = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")
IGNORED_LEAVES = ("num_batches_tracked",)


def read_weights_file(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A state dict's arrays by name from a ``.safetensors`` file or a PyTorch ``.pt``/``.pth`` file (read by
    jaxdl's own bounds-checked reader: nothing in the file is executed)."""
    path = pathlib.Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    from jaxdl.transfer.torch_checkpoint import read_state_dict

    return dict(read_state_dict(path))


def _linear(weight: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    kernel = weight.T
    if kernel.shape != shape and kernel.size == int(np.prod(shape)) and kernel.shape[0] == shape[0]:
        kernel = kernel.reshape(shape)  # DenseGeneral's (in, heads, head_dim)
    elif kernel.shape != shape and kernel.size == int(np.prod(shape)) and kernel.shape[-1] == shape[-1]:
        kernel = kernel.reshape(shape)  # an output projection's (heads, head_dim, out)
    return kernel


def _conv(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(*range(2, weight.ndim), 1, 0)


class _Filler:
    """Collects ``flax path -> array`` and the problems found, against the reference's shapes."""

    def __init__(self, reference: Any):
        self.expected = {path: tuple(np.shape(leaf)) for path, leaf in flatten_dict(dict(reference)).items()}
        self.filled: dict[Path, np.ndarray] = {}
        self.unknown: list[str] = []
        self.clashes: list[str] = []

    def has(self, path: Path) -> bool:
        return path in self.expected

    def leaves_under(self, module: Path) -> set[str]:
        return {p[-1] for p in self.expected if p[0] == "params" and p[1:-1] == module}

    def put(self, source: str, path: Path, value: np.ndarray) -> None:
        if path not in self.expected:
            self.unknown.append(f"{source} (-> {'/'.join(path)}, which the model does not have)")
            return
        value = np.asarray(value, np.float32)
        if value.shape != self.expected[path] and value.size == int(np.prod(self.expected[path])) and value.ndim == 1:
            value = value.reshape(self.expected[path])  # a DenseGeneral bias (heads, head_dim)
        if value.shape != self.expected[path]:
            self.clashes.append(f"{source} -> {'/'.join(path)}: needs {self.expected[path]}, got {value.shape}")
            return
        if path in self.filled:
            raise ValueError(f"two source tensors fill {'/'.join(path)}: the rules map two modules to one place")
        self.filled[path] = value

    def result(self) -> dict[str, Any]:
        missing = sorted("/".join(p) for p in set(self.expected) - set(self.filled))
        if self.unknown or missing or self.clashes:
            raise ValueError("the state dict does not match the model: " + "; ".join(part for part in (
                f"tensors no rule maps {_listed(sorted(self.unknown))}" if self.unknown else "",
                f"variables left unfilled {_listed(missing)}" if missing else "",
                f"shape clashes {_listed(self.clashes, 5)}" if self.clashes else "") if part))
        return unflatten_dict(self.filled)


class _KeepUnknown(dict):
    def __missing__(self, key: str) -> str:  # {layer} and {direction} are filled per recurrent layer later
        return "{" + key + "}"


def _module_path(prefix: str, rules: Mapping[str, str]) -> str | None:
    """The Flax module path template of PyTorch module ``prefix``: the first rule that matches it whole; a
    ``MultiheadAttention``'s ``out_proj`` follows its parent to ``.../out``."""
    for pattern, target in rules.items():
        match = re.fullmatch(pattern, prefix)
        if match:
            return string.Formatter().vformat(target, match.groups(), _KeepUnknown(match.groupdict()))
    parent, _, last = prefix.rpartition(".")
    if last == "out_proj":
        above = _module_path(parent, rules)
        return None if above is None else f"{above}/out"
    return None


def _split(template: str, **fields: Any) -> Path:
    return tuple(part for part in template.format(**fields).split("/") if part)


def _fill_recurrent(filler: _Filler, prefix: str, template: str, tensors: dict[str, np.ndarray]) -> None:
    """An LSTM/GRU/RNN module's ``weight_ih_l0``, ``bias_hh_l1_reverse``, ... into jaxdl cells."""
    cells: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for leaf, array in tensors.items():
        match = _RECURRENT.fullmatch(leaf)
        if match is None:
            filler.unknown.append(f"{prefix}.{leaf}")
            continue
        kind, side, layer, reverse = match.groups()
        cells.setdefault((int(layer), "backward" if reverse else "forward"), {})[f"{kind}_{side}"] = array
    for (layer, direction), parts in sorted(cells.items()):
        cell = _split(template, layer=layer, direction=direction)
        source = f"{prefix} layer {layer}{' reverse' if direction == 'backward' else ''}"
        if "weight_ih" in parts:
            filler.put(f"{source} weight_ih", ("params", *cell, "input", "kernel"), parts["weight_ih"].T)
        if "weight_hh" in parts:
            filler.put(f"{source} weight_hh", ("params", *cell, "recurrent", "kernel"), parts["weight_hh"].T)
        if filler.has(("params", *cell, "recurrent", "bias")):  # GRU: b_hn sits inside the reset gate's product
            for side, target in (("ih", "input"), ("hh", "recurrent")):
                if f"bias_{side}" in parts:
                    filler.put(f"{source} bias_{side}", ("params", *cell, target, "bias"), parts[f"bias_{side}"])
        elif "bias_ih" in parts or "bias_hh" in parts:  # LSTM, RNN: the two biases only ever add up
            bias = parts.get("bias_ih", 0.0) + parts.get("bias_hh", 0.0)
            filler.put(f"{source} bias_ih + bias_hh", ("params", *cell, "input", "bias"), bias)


def _fill_attention(filler: _Filler, prefix: str, module: Path, tensors: dict[str, np.ndarray]) -> None:
    """A ``MultiheadAttention``'s input projections (its ``out_proj`` is a Linear of its own)."""
    names = {"q": "query", "k": "key", "v": "value"}
    for leaf, array in tensors.items():
        if leaf in ("in_proj_weight", "in_proj_bias"):
            for part, chunk in zip("qkv", np.split(array, 3, axis=0)):
                path = ("params", *module, names[part])
                if leaf == "in_proj_weight":
                    filler.put(f"{prefix}.{leaf}[{part}]", path + ("kernel",), _linear(chunk, filler.expected.get(path + ("kernel",), ())))
                else:
                    filler.put(f"{prefix}.{leaf}[{part}]", path + ("bias",), chunk)
        elif re.fullmatch(r"[qkv]_proj_weight", leaf):
            path = ("params", *module, names[leaf[0]], "kernel")
            filler.put(f"{prefix}.{leaf}", path, _linear(array, filler.expected.get(path, ())))
        else:
            filler.unknown.append(f"{prefix}.{leaf}")


def _fill_layer(filler: _Filler, prefix: str, module: Path, tensors: dict[str, np.ndarray]) -> None:
    """Linear, convolution, normalisation or embedding, told apart by the target's variables."""
    leaves = filler.leaves_under(module)
    norm = {"weight": ("params", "scale"), "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
            "running_var": ("batch_stats", "var")}
    for leaf, array in tensors.items():
        name = f"{prefix}.{leaf}"
        if "embedding" in leaves and leaf == "weight":
            filler.put(name, ("params", *module, "embedding"), array)
        elif "scale" in leaves and leaf in norm:
            collection, target = norm[leaf]
            filler.put(name, (collection, *module, target), array)
        elif "kernel" in leaves and leaf == "weight":
            path = ("params", *module, "kernel")
            value = _linear(array, filler.expected[path]) if array.ndim == 2 else _conv(array)
            filler.put(name, path, value)
        elif "kernel" in leaves and leaf == "bias":
            filler.put(name, ("params", *module, "bias"), array)
        else:
            filler.unknown.append(f"{name} (-> {'/'.join(module) or '<root>'}, holding {sorted(leaves) or 'nothing'})")


def convert_state_dict(state_dict: Mapping[str, Any], reference: Any, rules: Mapping[str, str],
                       ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """Flax variables shaped like ``reference`` (a freshly initialised model's ``{"params", ["batch_stats"]}``)
    from a PyTorch ``state_dict`` (name -> array), through module ``rules`` (see the module docstring);
    tensors named in ``ignored`` (exact names or regular expressions) are dropped on purpose."""
    filler = _Filler(reference)
    modules: dict[str, dict[str, np.ndarray]] = {}
    for name, array in state_dict.items():
        if any(name == skip or re.fullmatch(skip, name) for skip in ignored):
            continue
        prefix, _, leaf = name.rpartition(".")
        if leaf in IGNORED_LEAVES:
            continue
        modules.setdefault(prefix, {})[leaf] = np.asarray(array)
    for prefix, tensors in modules.items():
        template = _module_path(prefix, rules)
        if template is None:
            filler.unknown += [f"{prefix}.{leaf}" for leaf in tensors]
            continue
        if any(_RECURRENT.fullmatch(leaf) for leaf in tensors):
            _fill_recurrent(filler, prefix, template, tensors)
        elif any(leaf.startswith(("in_proj_", "q_proj_", "k_proj_", "v_proj_")) for leaf in tensors):
            _fill_attention(filler, prefix, _split(template), tensors)
        else:
            _fill_layer(filler, prefix, _split(template), tensors)
    return filler.result()
