import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import precision_recall_fscore_support

from jaxdl.report.classification import classification_report, confusion_from, format_report, save_predictions, write_report


@settings(max_examples=20)
@given(st.integers(2, 6), st.integers(1, 60), st.integers(0, 10**6))
def test_classification_report_equals_scikit_learn(classes, n, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, classes, n), rng.integers(0, classes, n)
    report = classification_report(confusion_from(y_true, y_pred, classes), [str(c) for c in range(classes)])
    labels = list(range(classes))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for c in labels:
        row = report["classes"][str(c)]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[c], r[c], f[c], support[c]))
    for average in ("macro", "weighted"):
        expected = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)[:3]
        assert tuple(report[average][k] for k in ("precision", "recall", "f1")) == pytest.approx(expected)
    assert report["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert len(format_report(report).splitlines()) == classes + 5


def test_report_rebuilds_pictures_from_saved_predictions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((20, 8, 8, 1)).astype(np.float32)
    y_true, y_pred = rng.integers(0, 3, 20), rng.integers(0, 3, 20)
    save_predictions(tmp_path, y_true, y_pred, ["a", "b", "c"], images)
    written = {p.name for p in write_report(tmp_path)}
    assert {"confusion_matrix.png", "classification_report.txt", "misclassified.png"} <= written
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        write_report(empty)
