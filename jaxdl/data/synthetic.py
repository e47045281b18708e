"""Sequence-to-sequence tasks generated locally from a seed (no download): reverse a string of symbols.

Ids: 0 ``PAD``, 1 ``BOS``, 2 ``EOS``, then the symbols. A source is padded with 0; the decoder input is
``BOS`` + the reversed source; the labels are the reversed source + ``EOS``, with padding labelled -1 so
`sequence_cross_entropy` ignores it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxdl.data.base import DatasetSplits, option
from jaxdl.data.datasets import register_dataset
from jaxdl.data.pipeline import ArrayDataset

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
IGNORE = -1


def random_sequences(count: int, min_length: int, max_length: int, num_symbols: int, rng: np.random.Generator
                     ) -> list[tuple[int, ...]]:
    """``count`` distinct random sequences of symbol ids (``NUM_SPECIAL`` onwards), lengths uniform in range."""
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    possible = sum(num_symbols ** length for length in range(min_length, max_length + 1))
    if count > possible:
        raise ValueError(f"only {possible} distinct sequences of lengths {min_length}..{max_length} over {num_symbols} "
                         f"symbols exist, {count} were asked for")
    out: dict[tuple[int, ...], None] = {}
    while len(out) < count:
        length = int(rng.integers(min_length, max_length + 1))
        out[tuple(int(s) for s in rng.integers(NUM_SPECIAL, NUM_SPECIAL + num_symbols, length))] = None
    return list(out)


def seq2seq_arrays(pairs: list[tuple[tuple[int, ...], tuple[int, ...]]], source_length: int, target_length: int
                   ) -> ArrayDataset:
    """Pack ``(source, target)`` id pairs as ``x = {"source", "target"}`` (decoder input) and labels ``y``."""
    n = len(pairs)
    source = np.full((n, source_length), PAD, np.int32)
    decoder_in = np.full((n, target_length + 1), PAD, np.int32)
    labels = np.full((n, target_length + 1), IGNORE, np.int32)
    for i, (src, tgt) in enumerate(pairs):
        source[i, :len(src)] = src
        decoder_in[i, :len(tgt) + 1] = (BOS, *tgt)
        labels[i, :len(tgt) + 1] = (*tgt, EOS)
    return ArrayDataset({"source": source, "target": decoder_in}, labels)


@register_dataset("reverse")
def load_reverse(config: Any) -> DatasetSplits:
    """Reverse strings of ``vocab_size - 3`` symbols (default 20), lengths 1..``max_length`` (default 12).

    ``train_limit`` (20,000) training pairs and ``eval_limit`` (2,000) each for validation and test, all
    distinct: no test string is seen in training.
    """
    vocab_size, max_length = int(option(config, "vocab_size", 23)), int(option(config, "max_length", 12))
    sizes = (int(option(config, "train_limit", 20000)), int(option(config, "eval_limit", 2000)), int(option(config, "eval_limit", 2000)))
    rng = np.random.default_rng(int(option(config, "seed", 0)))
    sequences = random_sequences(sum(sizes), 1, max_length, vocab_size - NUM_SPECIAL, rng)
    starts = np.cumsum((0,) + sizes)
    splits = [seq2seq_arrays([(s, s[::-1]) for s in sequences[a:b]], max_length, max_length)
              for a, b in zip(starts[:-1], starts[1:])]
    return DatasetSplits(*splits, vocab_size, (), "reverse",
                         model_defaults={"vocab_size": vocab_size, "max_length": max_length + 1, "pad_id": PAD,
                                         "bos_id": BOS, "eos_id": EOS})
