"""The sequence data sets: movie reviews (real), sunspots (real), GunPoint (real), reverse (generated)."""

import numpy as np
import pytest

from jaxdl.config import default_config
from jaxdl.data.datasets import load_dataset
from jaxdl.data.reviews import (
    SOURCES,
    first_occurrences,
    read_movie_reviews,
    split_reviews,
)
from jaxdl.data.synthetic import BOS, EOS, IGNORE, PAD, load_reverse
from jaxdl.data.text import clean_text
from jaxdl.data.timeseries import (
    load_gunpoint,
    read_sunspots,
    seasonal_naive,
    sliding_windows,
)


def _data_config(**fields):
    config = default_config().data
    for key, value in fields.items():
        config[key] = value
    return config


def test_review_splits_are_disjoint_by_text_and_keep_the_label_and_source_mix():
    texts, labels, sources = read_movie_reviews()
    assert len(texts) == 33530
    strata = labels * len(SOURCES) + sources
    train, val, test = split_reviews(texts, strata, 0.1, 0.1, seed=0)
    keys = [{clean_text(texts[i]).casefold() for i in part} for part in (train, val, test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert len(train) + len(val) + len(test) == len(first_occurrences(texts)) < len(texts)
    for part in (val, test):
        assert abs(len(part) / (len(train) + len(val) + len(test)) - 0.1) < 0.002
        share = np.bincount(strata[part], minlength=4) / len(part)
        np.testing.assert_allclose(share, np.bincount(strata[train], minlength=4) / len(train), atol=0.003)
    again = split_reviews(texts, strata, 0.1, 0.1, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))


def test_movie_reviews_loader_tokenizes_and_reports_test_parts_by_source():
    data = load_dataset(_data_config(name="movie_reviews", train_limit=300, eval_limit=120, vocab_size=500, max_length=32))
    assert (len(data.train), len(data.validation), len(data.test)) == (300, 120, 120)
    assert data.model_defaults["vocab_size"] <= 500 and data.model_defaults["max_length"] == 32
    assert set(data.test_parts) == {"imdb", "rotten_tomatoes"}
    assert sum(len(p) for p in data.test_parts.values()) == len(data.test)
    assert data.train.x.max() < data.model_defaults["vocab_size"] and data.train.lengths.max() <= 32


def test_text_augment_adds_labelled_copies_to_the_training_split_only():
    config = dict(name="movie_reviews", train_limit=100, eval_limit=40, vocab_size=300, max_length=24)
    plain = load_dataset(_data_config(**config))
    augmented = load_dataset(_data_config(**config, text_augment=2))
    assert len(augmented.train) == 3 * len(plain.train) and len(augmented.validation) == len(plain.validation)
    np.testing.assert_array_equal(augmented.train.y, np.tile(plain.train.y, 3))
    np.testing.assert_array_equal(augmented.test.y, plain.test.y)  # (ids may differ: each load trains a tokenizer)
    assert len(augmented.test) == len(plain.test) and (augmented.train.lengths > 0).all()


@pytest.mark.parametrize("window,horizon", [(12, 1), (20, 5)])
def test_sunspot_examples_use_only_the_past_and_baselines_match_numpy(window, horizon):
    _, series = read_sunspots()
    assert len(series) == 309
    data = load_dataset(_data_config(name="sunspots", window=window, horizon=horizon, test_size=40, validation_size=40))
    scaled = lambda v: v * data.target_scale  # noqa: E731
    n = len(series)
    # The test examples are exactly the windows whose targets lie in the last 40 years.
    expected_x = np.stack([series[t - window:t] for t in range(n - 40, n - horizon + 1)])
    mean = series[: n - 80].mean()
    np.testing.assert_allclose(scaled(data.test.x) + mean, expected_x, rtol=1e-4, atol=1e-3)
    assert len(data.train) == n - 80 - window - horizon + 1
    targets = np.stack([series[t:t + horizon] for t in range(n - 40, n - horizon + 1)])
    persistence = np.mean(np.abs(expected_x[:, -1:] - targets))
    naive = np.array([[series[t + k - 11 * (k // 11 + 1)] for k in range(horizon)] for t in range(n - 40, n - horizon + 1)])
    assert data.baselines["persistence"]["mae"] == pytest.approx(persistence, rel=1e-5)
    assert data.baselines["seasonal_naive"]["mae"] == pytest.approx(np.mean(np.abs(naive - targets)), rel=1e-5)


def test_sliding_windows_and_seasonal_naive_on_a_ramp():
    ramp = np.arange(30, dtype=np.float32)
    x, y = sliding_windows(ramp, 5, 2, 10, 20)
    np.testing.assert_array_equal(x[:, -1] + 1, y[:, 0])
    assert y.max() <= 19 and y[0, 0] == 10
    np.testing.assert_array_equal(seasonal_naive(x, 2, 3), x[:, [-3, -2]])
    with pytest.raises(ValueError, match="window of at least 11"):
        seasonal_naive(x, 1, 11)


def test_gunpoint_keeps_the_official_split():
    data = load_gunpoint(_data_config(validation_fraction=0.2))
    assert (len(data.train) + len(data.validation), len(data.test)) == (50, 150)
    assert data.train.x.shape[1:] == (150,) and set(np.unique(data.test.y)) == {0, 1}


def test_reverse_task_labels_are_the_reversed_source_and_no_test_string_is_in_training():
    data = load_reverse(_data_config(train_limit=500, eval_limit=100, max_length=6, vocab_size=8))
    def strings(split):
        return {tuple(row[row != PAD]) for row in split.x["source"]}
    assert not (strings(data.train) & strings(data.test)) and not (strings(data.train) & strings(data.validation))
    for src, dec, lab in zip(data.test.x["source"], data.test.x["target"], data.test.y):
        s = src[src != PAD]
        n = len(s)
        np.testing.assert_array_equal(lab[:n], s[::-1])
        assert lab[n] == EOS and np.all(lab[n + 1:] == IGNORE)
        assert dec[0] == BOS and np.array_equal(dec[1:n + 1], s[::-1]) and np.all(dec[n + 1:] == PAD)
    with pytest.raises(ValueError, match="distinct sequences"):
        load_reverse(_data_config(train_limit=500, eval_limit=100, max_length=2, vocab_size=5))
