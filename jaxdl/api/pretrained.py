"""`pretrained(name)`: a zoo model ready to use on raw inputs: its preprocessing, class names and, for
MiniLM, sentence embeddings.

    net = jd.pretrained("mobilenet-v2")
    net.classify(photo)                       # [[("Egyptian cat", 0.80), ...]]
    jd.pretrained("minilm-l6").embed(["A man plays the guitar."])   # [1, 384], unit length
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np

from jaxdl.transfer.backbone import Backbone, load_backbone
from jaxdl.transfer.zoo import Pretrained, entry, load_pretrained


@dataclasses.dataclass
class PretrainedModel:
    """A zoo ``entry`` with its restored ``module`` and ``variables``; ``cache_dir`` is the zoo cache used."""

    entry: Pretrained
    module: nn.Module
    variables: Any
    cache_dir: str | None = None
    _forward: Any = dataclasses.field(default=None, repr=False)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the classifier's outputs, in label order."""
        if self.entry.class_names is None:
            raise ValueError(f"{self.entry.name!r} has no classifier and so no class names")
        return self.entry.class_names()

    def preprocess(self, inputs: Any) -> Any:
        """Raw inputs as the model was trained on them (images: the centred 224x224 crop in [0, 1])."""
        if self.entry.preprocess is None:
            raise ValueError(f"{self.entry.name!r} reads token ids; use .embed(texts) for text")
        return self.entry.preprocess(inputs)

    def __call__(self, inputs: Any) -> np.ndarray:
        """The model's outputs (logits) for already preprocessed ``inputs``."""
        if self._forward is None:
            self._forward = jax.jit(lambda v, x: self.module.apply(v, x))
        return np.asarray(self._forward(self.variables, inputs))

    def classify(self, images: Any, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per raw image, the ``k`` most probable classes as ``(name, probability)``."""
        from jaxdl.transfer.preprocess import top_classes

        return top_classes(self(self.preprocess(images)), k, self.class_names)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings ``[n, 384]`` (unit length) of ``texts``: MiniLM only (see
        `jaxdl.transfer.sentence_embedding`)."""
        if self.entry.name != "minilm-l6":
            raise ValueError(f"embed is MiniLM's (minilm-l6); {self.entry.name!r} is an image model: use classify")
        from jaxdl.transfer.sentence_embedding import minilm_embedder

        return minilm_embedder(self.cache_dir)(texts)

    def backbone(self) -> Backbone:
        """This model as a backbone for transfer (its classifier removed), for ``with_head`` and `jaxdl.fit`."""
        return load_backbone(pretrained=self.entry.name, cache=self.cache_dir)


def pretrained(name: str, cache_dir: str | None = None) -> PretrainedModel:
    """The zoo model ``name`` (``"mobilenet-v2"``, ``"efficientnet-lite0"``, ``"minilm-l6"``), its weights
    restored from the Orbax cache (imported from the installed package on first use)."""
    module, variables = load_pretrained(name, cache_dir)
    return PretrainedModel(entry(name), module, variables, cache_dir)
