import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.data.text_augment import (
    OPERATIONS,
    augment_text,
    augment_texts,
    load_synonyms,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)

WORDS = st.lists(st.sampled_from(["the", "movie", "was", "good", "bad", "film", "plot", "x", "boring", "and"]),
                 min_size=0, max_size=12)


def test_the_shipped_synonym_list_is_symmetric_and_offline():
    table = load_synonyms()
    assert len(table) > 200 and "film" in table["movie"]
    for word, others in table.items():
        assert word not in others
        for other in others:
            if " " not in other:
                assert word in table[other]


@settings(max_examples=30)
@given(WORDS, st.integers(0, 5), st.integers(0, 10**6))
def test_each_operation_keeps_what_it_should(words, n, seed):
    rng = np.random.default_rng(seed)
    table = load_synonyms()
    replaced = synonym_replacement(words, n, rng)
    assert len(replaced) == len(words)
    changed = [(a, b) for a, b in zip(words, replaced) if a != b]
    assert len(changed) <= n and all(b in table[a] for a, b in changed)
    inserted = random_insertion(words, n, rng)
    assert len(inserted) >= len(words) and len(inserted) - len(words) <= n
    swapped = random_swap(words, n, rng)
    assert sorted(swapped) == sorted(words)
    deleted = random_deletion(words, 0.5, rng)
    assert all(w in words for w in deleted) and (len(deleted) >= 1 or not words)
    assert len(random_deletion(words, 1.0, rng)) == (1 if words else 0)  # never empty


@settings(max_examples=20)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=5), st.integers(1, 3), st.integers(0, 1000))
def test_augmented_texts_keep_their_labels_and_are_never_empty(texts, copies, seed):
    labels = np.arange(len(texts))
    out, out_labels = augment_texts(texts, labels, copies, seed)
    assert len(out) == len(texts) * (copies + 1) and out[: len(texts)] == texts
    np.testing.assert_array_equal(out_labels, np.tile(labels, copies + 1))
    for i, text in enumerate(out):
        original = texts[i % len(texts)]
        assert bool(text.strip()) == bool(original.strip())  # non-blank stays non-blank
    assert augment_texts(texts, labels, copies, seed)[0] == out  # seeded


def test_unknown_operation_fails_clearly():
    with pytest.raises(ValueError, match="valid ones are"):
        augment_text("a good film", np.random.default_rng(0), operations=("paraphrase",))
    assert set(OPERATIONS) == {"synonym", "insert", "swap", "delete"}
