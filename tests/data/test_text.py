import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxdl.data.text import (
    PAD_ID,
    clean_text,
    encode_texts,
    load_tokenizer,
    text_dataset,
    train_tokenizer,
    truncate,
)

CORPUS = ["the movie was wonderful and the acting superb", "a dull boring film with a dull plot",
          "wonderful wonderful cast", "the plot was boring", "<br />an unexpected <i>gem</i> of a film"] * 4


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_saved_tokenizer_reloads_with_the_same_ids_has_pad_zero_and_round_trips_known_words(kind, tmp_path):
    a = train_tokenizer(CORPUS, kind, vocab_size=200)
    a.save(str(tmp_path / "tokenizer.json"))
    b = load_tokenizer(tmp_path / "tokenizer.json")
    assert [e.ids for e in a.encode_batch(CORPUS)] == [e.ids for e in b.encode_batch(CORPUS)]
    assert a.token_to_id("[PAD]") == PAD_ID
    assert a.decode(a.encode("the plot was wonderful").ids) == "the plot was wonderful"
    assert a.encode("zyzzyva").ids  # unseen words still encode (subwords or [UNK])


def test_tokenizer_learns_only_from_the_texts_it_is_given():
    tokenizer = train_tokenizer(["alpha beta gamma"] * 5, vocab_size=100)
    assert "alpha" in tokenizer.get_vocab() and "wonderful" not in tokenizer.get_vocab()


def test_unknown_tokenizer_kind_fails_with_the_valid_ones():
    with pytest.raises(ValueError, match="wordpiece"):
        train_tokenizer(CORPUS, "sentencepiece")


@given(n=st.integers(0, 40), max_length=st.integers(1, 20), how=st.sampled_from(["head", "tail", "head_tail"]))
def test_truncate_keeps_at_most_max_length_ids_from_the_right_ends(n, max_length, how):
    ids = list(range(n))
    out = truncate(ids, max_length, how)
    assert len(out) == min(n, max_length)
    if n <= max_length:
        assert out == ids
    elif how == "head":
        assert out == ids[:max_length]
    elif how == "tail":
        assert out == ids[-max_length:]
    else:
        head = max_length // 4
        assert out == ids[:head] + ids[n - (max_length - head):]


def test_encoded_texts_are_padded_with_zero_after_their_length():
    tokenizer = train_tokenizer(CORPUS, vocab_size=200)
    ids, lengths = encode_texts(tokenizer, ["the movie", "", "wonderful " * 30], 8)
    assert ids.shape == (3, 8) and ids.dtype == np.int32
    np.testing.assert_array_equal(lengths, [2, 1, 8])  # an empty text keeps one [UNK]
    for row, n in zip(ids, lengths):
        assert np.all(row[n:] == PAD_ID) and np.all(row[:n] != PAD_ID)
    data = text_dataset(tokenizer, ["the movie", "dull"], np.array([1, 0]), 8)
    np.testing.assert_array_equal(data.lengths, [2, 1])


def test_clean_text_removes_markup_and_extra_whitespace():
    assert clean_text("Great.<br /><br />Really   <b>great</b>!") == "Great. Really great !"


def test_a_tokenizer_without_pad_at_zero_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"hello": 0, "[PAD]": 1}, unk_token="hello")).save(str(tmp_path / "t.json"))
    with pytest.raises(ValueError, match=r"\[PAD\] at id 0"):
        load_tokenizer(tmp_path / "t.json")
    with pytest.raises(FileNotFoundError, match="missing.json' does not exist"):
        load_tokenizer(tmp_path / "missing.json")


def test_a_saved_tokenizer_that_truncates_on_its_own_is_reloaded_without_it_and_refused_with_it(tmp_path):
    tokenizer = train_tokenizer(CORPUS, vocab_size=200)
    long_text = " ".join(CORPUS)
    full = tokenizer.encode(long_text, add_special_tokens=False).ids
    tokenizer.enable_truncation(8)
    with pytest.raises(ValueError, match="no_truncation"):
        encode_texts(tokenizer, [long_text], max_length=32)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    ids, lengths = encode_texts(load_tokenizer(tmp_path / "tokenizer.json"), [long_text], 32, "head_tail")
    # The text's end survives: only data.truncation decides what is kept, not the tokenizer's own 8 tokens.
    assert len(full) > 32 and lengths[0] == 32 and list(ids[0]) == truncate(full, 32, "head_tail")
