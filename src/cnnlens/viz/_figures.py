"""Figures for evaluation and for looking inside: confusion matrix, ROC curves, per-class metrics, sample grids,
filter grids and feature-map grids. Each function returns a matplotlib Figure (``fig.savefig("x.png")``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .._errors import CnnlensError  # noqa: E402
from ..data import load_image  # noqa: E402


def confusion_matrix_figure(evaluation: Any, normalize: bool = False, cmap: str = "Blues") -> Figure:
    """Heat map of ``evaluation.confusion_matrix`` (rows = true class) with the count in every cell;
    ``normalize=True`` colours by the fraction of each true class (recall per row) and prints it too."""
    cm = np.asarray(evaluation.confusion_matrix)
    classes = list(evaluation.classes)
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, np.maximum(rows, 1)) if normalize else cm
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(shown, cmap=cmap, vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = shown.max() if shown.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{cm[i, j]}" + (f"\n{shown[i, j]:.0%}" if normalize else "")
            colour = "white" if top and shown[i, j] > top / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_title(f"confusion matrix (accuracy {evaluation.accuracy:.1%})")
    fig.tight_layout()
    return fig


def roc_figure(evaluation: Any, classes: Sequence[str] | None = None) -> Figure:
    """One-vs-rest ROC curve per class (or the given ``classes``) plus the micro and macro averages."""
    chosen = list(evaluation.classes) if classes is None else [str(c) for c in classes]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c in chosen:
        if c in evaluation.roc:
            fpr, tpr, _ = evaluation.roc[c]
            ax.plot(fpr, tpr, lw=1, label=f"{c} (AUC {evaluation.roc_auc[c]:.3f})")
    for avg, style in (("micro", ":"), ("macro", "--")):
        if avg in evaluation.roc:
            fpr, tpr, _ = evaluation.roc[avg]
            ax.plot(fpr, tpr, style, lw=2, color="black", label=f"{avg} average (AUC {evaluation.roc_auc[avg]:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves (one class vs rest)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def metrics_figure(evaluation: Any) -> Figure:
    """Grouped bars of precision, recall and F1 per class, with the support under each class name."""
    classes = list(evaluation.classes)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(classes) + 2), 4))
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [evaluation.report[c][metric] for c in classes], 0.27, label=metric)
    labels = [f"{c}\n(n={evaluation.report[c]['support']})" for c in classes]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.axhline(evaluation.no_information_rate, color="gray", ls="--", lw=0.8, label="no-information rate")
    ax.legend(fontsize=8, ncols=4, loc="upper center")
    ax.set_title("per-class precision, recall and F1")
    fig.tight_layout()
    return fig


def _pixels(item: Any) -> np.ndarray:
    return np.asarray(load_image(item), dtype=np.float32) / 255.0


def samples_figure(
    dataset: Any, indices: Sequence[int] | None = None, per_class: int = 6, evaluation: Any = None
) -> Figure:
    """A grid with one row per true class: up to ``per_class`` samples of ``dataset``.

    Without ``evaluation``, ``indices`` are dataset indices. With the ``evaluation`` of this dataset, ``indices``
    are evaluation rows (e.g. ``evaluation.groups.false_negatives["3"]``) and each sample is titled with its
    predicted class and probability (green when right, red when wrong).
    """
    classes = list(getattr(dataset, "classes", []))
    if evaluation is not None:
        rows = range(len(evaluation.y_true)) if indices is None else [int(i) for i in indices]
        picks = [(int(evaluation.positions[r]), int(evaluation.y_true[r]), r) for r in rows]
    else:
        labels = getattr(dataset, "labels", None)
        chosen = range(len(dataset)) if indices is None else [int(i) for i in indices]
        picks = [(i, int(labels[i]) if labels is not None else int(dataset[i][1]), None) for i in chosen]
    by_class: dict[int, list[tuple[int, int | None]]] = {}
    for position, label, row in picks:
        if len(by_class.setdefault(label, [])) < per_class:
            by_class[label].append((position, row))
    if not by_class:
        raise CnnlensError("No samples to show; the index list is empty.")
    labels_shown = sorted(by_class)
    cols = max(len(v) for v in by_class.values())
    fig, axes = plt.subplots(
        len(labels_shown), cols, figsize=(1.4 * cols + 0.6, 1.5 * len(labels_shown)), squeeze=False
    )
    for r, label in enumerate(labels_shown):
        name = classes[label] if label < len(classes) else str(label)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center")
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(by_class[label]):
                ax.set_axis_off()
                continue
            position, row = by_class[label][c]
            ax.imshow(_pixels(dataset[position][0]))
            if row is not None:
                p = int(evaluation.y_pred[row])
                colour = "green" if p == label else "red"
                ax.set_title(
                    f"{evaluation.classes[p]} {evaluation.probabilities[row, p]:.0%}", fontsize=7, color=colour
                )
    fig.tight_layout()
    return fig


def _tiles(tiles: np.ndarray, draw: Any, cell: float, title: str) -> Figure:
    """A near-square grid with one numbered axes per tile, drawn by ``draw(ax, tile)``; spare axes left blank."""
    if not len(tiles):
        raise CnnlensError(f"Nothing to draw for {title!r}: no filters or channels (or a limit below 1).")
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(tiles):
            draw(ax, tiles[k])
            ax.set_title(str(k), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _as_array(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _draw_filter(ax: Any, f: np.ndarray) -> None:
    if f.shape[0] == 3:
        lo, hi = f.min(), f.max()
        ax.imshow(((f - lo) / (hi - lo + 1e-12)).transpose(1, 2, 0))
    else:
        m = f.mean(0)
        lim = np.abs(m).max() + 1e-12
        ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)


def filters_figure(weights: torch.Tensor | np.ndarray, max_filters: int = 64, title: str = "") -> Figure:
    """Conv weights ``(out, in, kh, kw)`` as a grid: RGB when ``in == 3``, else the mean over input channels;
    each filter scaled to its own range (blue = negative, red = positive for one channel)."""
    w = _as_array(weights)
    if w.ndim != 4:
        raise CnnlensError(f"Expected conv weights of shape (out, in, kh, kw); got {w.shape}.")
    w = w[:max_filters]
    return _tiles(w, _draw_filter, 1.1, title or f"{len(w)} filters")


def feature_maps_figure(
    maps: torch.Tensor | np.ndarray, max_maps: int = 32, title: str = "", cmap: str = "viridis"
) -> Figure:
    """One image's feature maps ``(C, H, W)`` (or ``(1, C, H, W)``) as a grid, each channel on its own scale."""
    m = _as_array(maps)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3:
        raise CnnlensError(f"Expected one image's feature maps (C, H, W); got shape {m.shape}.")
    m = m[:max_maps]
    return _tiles(m, lambda ax, channel: ax.imshow(channel, cmap=cmap), 1.2, title or f"{len(m)} feature maps")
