"""Text augmentation (EDA, Wei & Zou 2019): synonym replacement, random insertion,
random swap and random deletion of words, on the host, before tokenization.

Synonyms come from a small curated list shipped with the package (`jaxdl/data/resources/synonyms.tsv`),
never from a download. Every function takes a `numpy.random.Generator`, so augmentation is reproducible
from a seed, and never returns an empty text. Labels are untouched: `augment_texts` repeats each label
with its text's copies.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Sequence

import numpy as np


@functools.cache
def load_synonyms() -> dict[str, tuple[str, ...]]:
    """Word -> its synonyms, from the shipped list (each group's words are synonyms of one another)."""
    text = importlib.resources.files("jaxdl.data").joinpath("resources/synonyms.tsv").read_text(encoding="utf-8")
    table: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        group = [w.strip() for w in line.split("\t") if w.strip()]
        for word in group:
            table.setdefault(word, set()).update(w for w in group if w != word)
    return {word: tuple(sorted(others)) for word, others in table.items()}


def _with_synonyms(words: Sequence[str], synonyms: dict[str, tuple[str, ...]]) -> list[int]:
    return [i for i, w in enumerate(words) if w.lower() in synonyms]


def synonym_replacement(words: Sequence[str], n: int, rng: np.random.Generator,
                        synonyms: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Replace up to ``n`` distinct words that have synonyms with a random synonym each."""
    synonyms = load_synonyms() if synonyms is None else synonyms
    out = list(words)
    candidates = _with_synonyms(out, synonyms)
    for i in rng.permutation(candidates)[:n] if candidates else []:
        out[i] = str(rng.choice(synonyms[out[i].lower()]))
    return out


def random_insertion(words: Sequence[str], n: int, rng: np.random.Generator,
                     synonyms: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Insert, ``n`` times, a synonym of a random word that has one at a random position."""
    synonyms = load_synonyms() if synonyms is None else synonyms
    out = list(words)
    for _ in range(n):
        candidates = _with_synonyms(out, synonyms)
        if not candidates:
            break
        word = out[int(rng.choice(candidates))].lower()
        out.insert(int(rng.integers(len(out) + 1)), str(rng.choice(synonyms[word])))
    return out


def random_swap(words: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """Swap two random positions, ``n`` times."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.choice(len(out), 2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: Sequence[str], p: float, rng: np.random.Generator) -> list[str]:
    """Drop each word with probability ``p``; if every word would go, keep one at random (never empty)."""
    if not 0 <= p <= 1:
        raise ValueError(f"random_deletion p must be in [0, 1], got {p}")
    if not words:
        return []
    kept = [w for w, drop in zip(words, rng.random(len(words)) < p) if not drop]
    return kept or [words[int(rng.integers(len(words)))]]


OPERATIONS = ("synonym", "insert", "swap", "delete")


def augment_text(text: str, rng: np.random.Generator, rate: float = 0.1,
                 operations: Sequence[str] = OPERATIONS) -> str:
    """One augmented copy of ``text``: one operation, chosen at random from ``operations``, applied to about
    ``rate`` of the words (at least one). An empty or blank text is returned as is."""
    unknown = set(operations) - set(OPERATIONS)
    if unknown or not operations:
        raise ValueError(f"unknown text augmentation(s) {sorted(unknown)}; valid ones are {list(OPERATIONS)}")
    words = text.split()
    if not words:
        return text
    n = max(1, int(round(rate * len(words))))
    operation = operations[int(rng.integers(len(operations)))]
    if operation == "synonym":
        words = synonym_replacement(words, n, rng)
    elif operation == "insert":
        words = random_insertion(words, n, rng)
    elif operation == "swap":
        words = random_swap(words, n, rng)
    else:
        words = random_deletion(words, rate, rng)
    return " ".join(words)


def augment_texts(texts: Sequence[str], labels: np.ndarray, copies: int, seed: int, rate: float = 0.1,
                  operations: Sequence[str] = OPERATIONS) -> tuple[list[str], np.ndarray]:
    """The texts followed by ``copies`` augmented copies of each, with the labels repeated to match."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    rng = np.random.default_rng(seed)
    out = list(texts)
    for _ in range(copies):
        out.extend(augment_text(t, rng, rate, operations) for t in texts)
    return out, np.concatenate([np.asarray(labels)] * (copies + 1))
