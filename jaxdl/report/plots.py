"""Pictures of a run, written as PNG files.

Figures are `matplotlib.figure.Figure` objects saved through the Agg canvas: no display is needed, pyplot's
global state and the user's chosen backend are left alone, and matplotlib is imported only when a figure is
drawn (importing jaxdl does not import it).
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence


def _subplots(*grid: int, figsize: tuple[float, float], squeeze: bool = True) -> tuple[Any, Any]:
    """A new figure and its axes (as ``pyplot.subplots`` gives them), without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, squeeze=squeeze)


def _save(fig, path: pathlib.Path, tight: bool = True) -> pathlib.Path:
    if tight:  # measuring every label is the slow part of a small figure: grids set their spacing instead
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _finish_axis(ax, xlabel: str, ylabel: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_learning_curves(history: Sequence[dict[str, float]], path: str | pathlib.Path,
                         best_epoch: int | None = None) -> pathlib.Path:
    """Plot train vs validation curves of every metric in ``history`` (one dict per epoch, keys like
    ``train_loss``/``val_loss``) into ``path``; the epoch restored by early stopping is marked."""
    path = pathlib.Path(path)
    logged = {k.split("_", 1)[1] for row in history for k in row if k.startswith(("train_", "val_"))}
    # Micro-averaged scores equal accuracy for single-label classification: plotting them adds nothing.
    preferred = ("loss", "accuracy", "f1_macro", "mae", "rmse")
    names = [n for n in preferred if n in logged] or sorted(logged - {"count"})[:3]
    fig, axes = _subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3.6), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes[0], names):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{name}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, markersize=3, label=f"{'validation' if split == 'val' else 'train'}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set_title(name)
        _finish_axis(ax, "epoch")
    return _save(fig, path)


def plot_search(rows: Sequence[dict], metric: str, path: str | pathlib.Path) -> pathlib.Path:
    """One panel per searched field: each trial's best ``metric`` against that field's value (log axis when
    the values span more than a factor of 20); the best trial is ringed."""
    path = pathlib.Path(path)
    score = f"best_{metric}"
    reserved = {score, f"final_{metric}", "group", "trial", "train_loss", "diverged"}
    fields = [k for k in rows[0] if k not in reserved]
    fig, axes = _subplots(1, max(len(fields), 1), figsize=(4.5 * max(len(fields), 1), 3.6), squeeze=False)
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
        _finish_axis(ax, field, score)
    return _save(fig, path)


def plot_lr_find(rates, losses, final_loss, suggested: float | None, path: str | pathlib.Path) -> pathlib.Path:
    """A learning-rate range test: each rate's loss curve over the steps (left, coloured by rate) and each
    rate's final loss (right, log rate axis) with the ``suggested`` rate marked."""
    import numpy as np
    from matplotlib import cm

    path = pathlib.Path(path)
    fig, (curves, final) = _subplots(1, 2, figsize=(10, 3.8))
    colours = cm.viridis(np.linspace(0, 1, len(rates)))
    for rate, row, colour in zip(rates, losses, colours):
        curves.plot(np.arange(1, len(row) + 1), row, color=colour, linewidth=1, label=f"{rate:.1e}")
    curves.set_yscale("log")
    curves.set_title("training loss per rate (gaps: diverged)")
    _finish_axis(curves, "step", "loss")
    curves.legend(fontsize=6, ncol=2)
    final.plot(rates, final_loss, "-o", markersize=3, label="final loss (last fifth of steps)")
    if suggested is not None:
        final.axvline(suggested, color="red", linestyle="--", linewidth=1, label=f"suggested {suggested:.2g}")
    final.set_xscale("log")
    _finish_axis(final, "learning rate", "loss")
    return _save(fig, path)


def plot_confusion_matrix(confusion, class_names: Sequence[str], path: str | pathlib.Path) -> pathlib.Path:
    """A heatmap of ``confusion[true, predicted]`` counts, rows normalised to recall for the colour, with the
    counts written in each cell."""
    import numpy as np

    path = pathlib.Path(path)
    confusion = np.asarray(confusion)
    n = len(confusion)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = _subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    return _save(fig, path)


def plot_misclassified(images, true, predicted, class_names: Sequence[str], path: str | pathlib.Path,
                       columns: int = 6) -> pathlib.Path:
    """A grid of images ``[n, h, w, c]`` with their true and predicted class names (the model's mistakes)."""
    import numpy as np

    path = pathlib.Path(path)
    images = np.asarray(images)
    count = len(images)
    rows = max(1, -(-count // columns))
    fig, axes = _subplots(rows, columns, figsize=(1.8 * columns, 2.0 * rows), squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (2.0 * rows), wspace=0.1, hspace=0.45)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, t, p in zip(axes.ravel(), images, true, predicted):
        shown = image[..., 0] if image.shape[-1] == 1 else (image - image.min()) / max(np.ptp(image), 1e-8)
        ax.imshow(shown, cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(f"true {class_names[int(t)]}\npred {class_names[int(p)]}", fontsize=8, color="crimson")
    if count == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    return _save(fig, path, tight=False)


def plot_segmentation(images, true_masks, predicted_masks, class_names: Sequence[str], path: str | pathlib.Path) -> pathlib.Path:
    """Rows of image / true mask / predicted mask for each of ``images [n, h, w, c]`` (masks ``[n, h, w]``)."""
    import numpy as np

    path = pathlib.Path(path)
    images = np.asarray(images)
    n = len(images)
    fig, axes = _subplots(3, n, figsize=(1.6 * n, 5.2), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=0.92, wspace=0.05, hspace=0.08)
    mask_style = dict(cmap="tab10", vmin=0, vmax=max(9, len(class_names) - 1), interpolation="nearest")
    for i in range(n):
        shown = images[i, ..., 0] if images.shape[-1] == 1 else images[i]
        axes[0, i].imshow(shown, cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(true_masks[i], **mask_style)
        axes[2, i].imshow(predicted_masks[i], **mask_style)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for row, label in enumerate(("image", "true mask", "predicted")):
        axes[row, 0].set_ylabel(label)
    fig.suptitle("classes: " + ", ".join(f"{k} {name}" for k, name in enumerate(class_names)), fontsize=9)
    return _save(fig, path, tight=False)


def plot_detections(images, detections, truths, class_names: Sequence[str], path: str | pathlib.Path,
                    columns: int = 6) -> pathlib.Path:
    """A grid of ``images`` with predicted boxes (red, class and score) over the true ones (green dashed).
    ``detections[i] = (boxes, scores, classes)``, ``truths[i] = (boxes, classes)``; boxes ``(x0, y0, x1, y1)``."""
    import numpy as np
    from matplotlib.patches import Rectangle

    path = pathlib.Path(path)
    images = np.asarray(images)
    rows = max(1, -(-len(images) // columns))
    fig, axes = _subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.04, hspace=0.04)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, (boxes, scores, classes), (true_boxes, true_classes) in zip(axes.ravel(), images, detections, truths):
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        for (x0, y0, x1, y1), c in zip(true_boxes, true_classes):
            if c >= 0:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", linestyle="--", lw=1))
        for (x0, y0, x1, y1), s, c in zip(boxes, scores, classes):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="red", lw=1))
            ax.text(x0, y0 - 1, f"{class_names[int(c)]} {s:.2f}", color="red", fontsize=7, va="bottom")
    return _save(fig, path, tight=False)


def plot_image_grid(images, path: str | pathlib.Path, columns: int = 8, title: str | None = None) -> pathlib.Path:
    """``images [n, h, w, c]`` in ``[0, 1]`` tiled into one picture, ``columns`` a row (one ``imshow``: fast)."""
    import numpy as np

    path = pathlib.Path(path)
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = max(1, -(-n // columns))
    sheet = np.ones((rows * (h + 2), columns * (w + 2), c), np.float32)
    for k, image in enumerate(images):
        r, col = divmod(k, columns)
        sheet[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = image
    fig, ax = _subplots(figsize=(columns * 0.7 + 0.2, rows * 0.7 + (0.4 if title else 0.2)))
    ax.imshow(sheet[..., 0] if c == 1 else sheet, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
