"""Pictures of a run, written as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import pathlib
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(history: Sequence[dict[str, float]], path: str | pathlib.Path,
                         best_epoch: int | None = None) -> pathlib.Path:
    """Plot train vs validation curves of every metric in ``history`` (one dict per epoch, keys like
    ``train_loss``/``val_loss``) into ``path``; the epoch restored by early stopping is marked."""
    path = pathlib.Path(path)
    logged = {k.split("_", 1)[1] for row in history for k in row if k.startswith(("train_", "val_"))}
    # Micro-averaged scores equal accuracy for single-label classification: plotting them adds nothing.
    preferred = ("loss", "accuracy", "f1_macro", "mae", "rmse")
    names = [n for n in preferred if n in logged] or sorted(logged - {"count"})[:3]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes[0], names):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{name}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=f"{'validation' if split == 'val' else 'train'}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_search(rows: Sequence[dict], metric: str, path: str | pathlib.Path) -> pathlib.Path:
    """One panel per searched field: each trial's best ``metric`` against that field's value (log axis when
    the values span more than a factor of 20); the best trial is ringed."""
    path = pathlib.Path(path)
    score = f"best_{metric}"
    reserved = {score, f"final_{metric}", "group", "trial", "train_loss", "diverged"}
    fields = [k for k in rows[0] if k not in reserved]
    fig, axes = plt.subplots(1, max(len(fields), 1), figsize=(4.5 * max(len(fields), 1), 3.6), squeeze=False)
    best = rows[0]
    for ax, field in zip(axes[0], fields):
        values = [row[field] for row in rows]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        xs = values if numeric else [str(v) for v in values]
        ax.scatter(xs, [row[score] for row in rows], s=18, alpha=0.8)
        ax.scatter([best[field] if numeric else str(best[field])], [best[score]], s=120, facecolors="none",
                   edgecolors="red", label="best")
        positive = [v for v in values if numeric and v > 0]
        if numeric and len(positive) == len(values) and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(field)
        ax.set_ylabel(score)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
