"""Sentence embeddings with the pretrained MiniLM-L6 encoder, as sentence-transformers computes them.

Each text is tokenised with its special tokens (``[CLS] ... [SEP]``) and cut to ``max_length`` tokens
(256, the model's own limit, ``[SEP]`` kept); a batch is padded to a multiple of 32 tokens and the padding
masked out of attention and of the mean over tokens, so an embedding does not depend on what else is in its
batch; the mean is scaled to unit length. The forward pass is compiled once per padded length.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models.bert import BertEncoder, mean_pool_normalized

PAD_TO = 32  # padded lengths are multiples of this: few compiles, little wasted work


class SentenceEmbedder:
    """``embedder(texts) -> [n, d]`` float32 unit vectors from a `BertEncoder` ``module`` with ``variables`` and
    its WordPiece ``tokenizer`` (a `tokenizers.Tokenizer`)."""

    def __init__(self, module: BertEncoder, variables: Any, tokenizer: Any, max_length: int = 256, batch_size: int = 64):
        if not 2 <= max_length <= module.max_length:
            raise ValueError(f"max_length must be in [2, {module.max_length}] (the encoder's positions), got {max_length}")
        self.module, self.variables, self.batch_size = module, variables, batch_size
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)  # the tokenizer keeps [SEP] when it truncates
        self._forward = jax.jit(lambda v, ids, valid: mean_pool_normalized(module.apply(v, ids, valid), valid))

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids ``[n, t]`` (0-padded to a multiple of 32) and the mask of real tokens, special tokens included."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        length = -(-max(len(e.ids) for e in encodings) // PAD_TO) * PAD_TO
        ids, valid = np.zeros((len(texts), length), np.int32), np.zeros((len(texts), length), bool)
        for i, encoding in enumerate(encodings):
            ids[i, :len(encoding.ids)], valid[i, :len(encoding.ids)] = encoding.ids, True
        return ids, valid

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts; wrap a single text in a list")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            bad = next(i for i, t in enumerate(texts) if not isinstance(t, str))
            raise TypeError(f"text {bad} is a {type(texts[bad]).__name__}, not a str")
        if not texts:
            return np.zeros((0, self.module.d_model), np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            ids, valid = self.encode(texts[start:start + self.batch_size])
            out.append(np.asarray(self._forward(self.variables, jnp.asarray(ids), jnp.asarray(valid))))
        return np.concatenate(out)


@functools.cache
def minilm_embedder(cache_dir: str | None = None) -> SentenceEmbedder:
    """The `SentenceEmbedder` of the zoo's ``minilm-l6`` (imported into the cache on first use)."""
    from jaxdl.data.minilm_vocab import load_minilm_tokenizer
    from jaxdl.transfer.zoo import load_pretrained

    module, variables = load_pretrained("minilm-l6", cache_dir)
    return SentenceEmbedder(module, variables, load_minilm_tokenizer())
