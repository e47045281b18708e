"""A run's report: learning curves, confusion matrix, per-class scores and its mistakes, rebuilt from files.

`jaxdl train` saves the test split's predictions (``predictions.npz``) beside ``metrics.jsonl`` and
``summary.json``; `write_report` turns those into ``learning_curves.png``, ``confusion_matrix.png``,
``classification_report.txt``/``.json`` and ``misclassified.png`` (image data), plus ``search.png`` for a
search directory. ``jaxdl report DIR`` runs it again at any time, without the model or the data.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Sequence

import numpy as np

from jaxdl.metrics import per_class_scores
from jaxdl.report import plots
from jaxdl.report.curves import epoch_rows

PREDICTIONS = "predictions.npz"
MAX_SHOWN_MISTAKES = 36


def confusion_from(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``confusion[true, predicted]`` counts."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return confusion


def classification_report(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support and their macro and support-weighted averages, plus accuracy."""
    scores = per_class_scores(confusion)
    support = scores["support"]
    rows = {name: {k: float(scores[k][i]) if k != "support" else int(support[i]) for k in scores}
            for i, name in enumerate(class_names)}
    weights = support / max(support.sum(), 1)
    return {
        "classes": rows,
        "macro": {k: float(scores[k].mean()) for k in ("precision", "recall", "f1")},
        "weighted": {k: float((scores[k] * weights).sum()) for k in ("precision", "recall", "f1")},
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "support": int(support.sum()),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as an aligned text table (one row per class, then the averages)."""
    width = max([len(n) for n in report["classes"]] + [12])
    lines = [f"{'':>{width}}  precision  recall      f1  support"]
    for name, row in report["classes"].items():
        lines.append(f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}")
    lines.append("")
    for avg in ("macro", "weighted"):
        r = report[avg]
        lines.append(f"{avg + ' avg':>{width}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:6.4f}  {report['support']:7d}")
    lines.append(f"{'accuracy':>{width}}  {'':9}  {'':6}  {report['accuracy']:6.4f}  {report['support']:7d}")
    return "\n".join(lines) + "\n"


def save_predictions(workdir: str | pathlib.Path, y_true: np.ndarray, y_pred: np.ndarray,
                     class_names: Sequence[str], inputs: np.ndarray | None = None) -> pathlib.Path:
    """Write the test predictions, and (for images ``[n, h, w, c]``) the first mistakes' images, to ``predictions.npz``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)[:MAX_SHOWN_MISTAKES]
    extra = {}
    if inputs is not None and np.ndim(inputs) == 4:
        extra = {"mistake_images": np.asarray(inputs)[wrong], "mistake_index": wrong}
    path = pathlib.Path(workdir) / PREDICTIONS
    np.savez_compressed(path, y_true=y_true, y_pred=y_pred, class_names=np.array(list(class_names)), **extra)
    return path


def write_report(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """(Re)build every picture and table a run's files allow; returns the paths written."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"{workdir} is not a directory: give the --workdir of a jaxdl train or tune run")
    written = []
    epochs = epoch_rows(workdir / "metrics.jsonl")
    if epochs:
        summary = json.loads((workdir / "summary.json").read_text()) if (workdir / "summary.json").is_file() else {}
        written.append(plots.plot_learning_curves(epochs, workdir / "learning_curves.png", summary.get("best_epoch")))
    predictions = workdir / PREDICTIONS
    if predictions.is_file():
        with np.load(predictions, allow_pickle=False) as saved:
            names = [str(n) for n in saved["class_names"]]
            confusion = confusion_from(saved["y_true"], saved["y_pred"], len(names))
            written.append(plots.plot_confusion_matrix(confusion, names, workdir / "confusion_matrix.png"))
            report = classification_report(confusion, names)
            (workdir / "classification_report.json").write_text(json.dumps(report, indent=2))
            (workdir / "classification_report.txt").write_text(format_report(report))
            written += [workdir / "classification_report.json", workdir / "classification_report.txt"]
            if "mistake_images" in saved:
                index = saved["mistake_index"]
                written.append(plots.plot_misclassified(saved["mistake_images"], saved["y_true"][index],
                                                        saved["y_pred"][index], names, workdir / "misclassified.png"))
    search = workdir / "search.json"
    if search.is_file():
        saved_search = json.loads(search.read_text())
        written.append(plots.plot_search(saved_search["trials"], saved_search["metric"], workdir / "search.png"))
    if not written:
        raise FileNotFoundError(f"{workdir} holds no metrics.jsonl epochs, {PREDICTIONS} or search.json to report on")
    return written
