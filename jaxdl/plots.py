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
