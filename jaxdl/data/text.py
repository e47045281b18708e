"""Text to padded token ids: train a WordPiece or BPE vocabulary (``tokenizers``) on the training split only,
encode with truncation, and wrap the result for length-bucketed batching.

Id 0 is ``[PAD]`` in every vocabulary built here, so padding is recognisable from the ids alone.
A trained tokenizer is saved with the run that used it, since retraining need not give the same ids.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

import numpy as np
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from jaxdl.data.bucketing import BucketedDataset

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID = 0
TOKENIZER_KINDS = ("wordpiece", "bpe")
TRUNCATIONS = ("head", "tail", "head_tail")

_MARKUP = re.compile(r"<br\s*/?>|<[^>]{1,20}>")


def clean_text(text: str) -> str:
    """Replace HTML line breaks and short tags (IMDB reviews carry ``<br />``) by spaces and collapse whitespace."""
    return " ".join(_MARKUP.sub(" ", text).split())


def train_tokenizer(texts: Iterable[str], kind: str = "wordpiece", vocab_size: int = 20000,
                    min_frequency: int = 2, lowercase: bool = True) -> Tokenizer:
    """Learn a ``kind`` ("wordpiece" or "bpe") vocabulary of at most ``vocab_size`` ids from ``texts``.

    Call it on the training split only, so validation and test words are seen as a user's new text would be.
    Text is normalised BERT-style (accents stripped, optionally lowercased) and split on whitespace and
    punctuation before subwords are learned; ``[PAD]`` is id 0 and ``[UNK]`` id 1. The trainer breaks ties
    between equally frequent merges differently from run to run, so a run saves its tokenizer
    (``tokenizer.json`` in the workdir) and evaluation reloads it with `load_tokenizer`.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer {kind!r}; valid kinds are {list(TOKENIZER_KINDS)}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(SPECIAL_TOKENS))
        tokenizer.decoder = decoders.WordPiece()
    else:
        # The end-of-word marker lets decode() put the spaces back.
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), end_of_word_suffix="</w>")
        tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, strip_accents=True, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A tokenizer saved with ``tokenizer.save(path)``; it must put ``[PAD]`` at id 0 like those trained here."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # a saved pretrained tokenizer may pad or cut on its own: `encode_texts` does both
    tokenizer.no_truncation()
    if tokenizer.token_to_id("[PAD]") != PAD_ID:
        raise ValueError(f"tokenizer {str(path)!r} does not have [PAD] at id {PAD_ID}; padding would be read as a token")
    return tokenizer


def truncate(ids: Sequence[int], max_length: int, truncation: str = "head") -> list[int]:
    """At most ``max_length`` ids: the first ones (``"head"``), the last ones (``"tail"``), or the first quarter
    and the last three quarters (``"head_tail"``: a review's verdict is often at its end)."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"unknown truncation {truncation!r}; valid ones are {list(TRUNCATIONS)}")
    ids = list(ids)
    if len(ids) <= max_length:
        return ids
    if truncation == "head":
        return ids[:max_length]
    if truncation == "tail":
        return ids[len(ids) - max_length:]
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head):]


def special_token_ids(tokenizer: Tokenizer) -> tuple[int, int]:
    """The ids of ``[CLS]`` and ``[SEP]`` (``ValueError`` when the vocabulary lacks them)."""
    ids = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if None in ids:
        raise ValueError("data.special_tokens needs a vocabulary with [CLS] and [SEP]; this tokenizer has none")
    return ids  # type: ignore[return-value]


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, truncation: str = "head",
                 special_tokens: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[n, max_length]`` int32 (padded with 0 at the end) and true lengths ``[n]``.

    ``special_tokens`` wraps each text as ``[CLS] ... [SEP]`` (truncating the text, never the markers), as
    BERT-style pretrained encoders were trained. An empty text keeps one ``[UNK]`` so no sequence has length 0.
    """
    if max_length < 1 + 2 * special_tokens:
        raise ValueError(f"max_length must be >= {1 + 2 * special_tokens}, got {max_length}")
    if tokenizer.truncation is not None:  # it would cut every text to its own length before `truncation` applies
        raise ValueError(f"the tokenizer truncates on its own ({tokenizer.truncation}); call tokenizer.no_truncation() "
                         "and let max_length/truncation decide what is kept")
    ids = np.zeros((len(texts), max_length), np.int32)
    lengths = np.zeros((len(texts),), np.int32)
    unk = tokenizer.token_to_id("[UNK]")
    wrap = special_token_ids(tokenizer) if special_tokens else None
    for row, encoding in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=False)):
        tokens = truncate(encoding.ids, max_length - 2 * bool(wrap), truncation) or [unk]
        if wrap:
            tokens = [wrap[0], *tokens, wrap[1]]
        ids[row, :len(tokens)] = tokens
        lengths[row] = len(tokens)
    return ids, lengths


def text_dataset(tokenizer: Tokenizer, texts: Sequence[str], labels: np.ndarray, max_length: int,
                 truncation: str = "head", buckets: Sequence[int] = (), special_tokens: bool = False) -> BucketedDataset:
    """Encode ``texts`` into a `BucketedDataset` of ids ``[n, max_length]`` with ``labels`` and lengths."""
    ids, lengths = encode_texts(tokenizer, texts, max_length, truncation, special_tokens)
    return BucketedDataset(ids, np.asarray(labels), lengths=lengths, buckets=tuple(buckets))
