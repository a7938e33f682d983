"""Figures for evaluation: confusion matrix, ROC curves, per-class metrics and sample grids, readable and bounded
for any number of classes. Each function returns a matplotlib Figure (``fig.savefig("x.png")``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, SupportsInt

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.errors import CnnlensError  # noqa: E402
from ..data import load_image  # noqa: E402
from ._legend import LABEL_PT, TITLE_PT  # noqa: E402

if TYPE_CHECKING:
    from ..data import ImageDataset, ImageInput
    from ..evaluation import Evaluation

MAX_CLASSES = 20
"""Most classes an evaluation figure draws one by one; the others are summarised (see
`Evaluation.classes_to_show`)."""


def _shown(evaluation: Evaluation, max_classes: int) -> tuple[list[int], int]:
    shown = evaluation.classes_to_show(max_classes)
    return shown, len(evaluation.classes) - len(shown)


def _left_out(evaluation: Evaluation, n: int, what: str = "classes") -> str:
    return f"\n{n} of the {len(evaluation.classes)} {what} not shown (no image of them, or fewer mistakes)" if n else ""


def confusion_matrix_figure(
    evaluation: Evaluation, normalize: bool = False, cmap: str = "Blues", max_classes: int = MAX_CLASSES
) -> Figure:
    """Heat map of ``evaluation.confusion_matrix`` (rows = true class) with the count in every cell;
    ``normalize=True`` colours by the fraction of each true class (recall per row) and prints it too.

    With more than ``max_classes`` classes only those of `Evaluation.classes_to_show` get a row and a column
    (the classes in the data and the most confused ones) and one more row and column, "other classes", sums the
    rest; the title says how many were left out. Size and memory stay bounded for any number of classes."""
    shown, hidden = _shown(evaluation, max_classes)
    names = [evaluation.classes[c] for c in shown]
    where = np.full(len(evaluation.classes), len(shown), dtype=np.int64)
    where[shown] = np.arange(len(shown))
    m = len(shown) + (1 if hidden else 0)
    cm = np.zeros((m, m), dtype=np.int64)
    np.add.at(cm, (where[evaluation.y_true], where[evaluation.y_pred]), 1)
    if hidden:
        names.append(f"other {hidden} classes")
    rows = cm.sum(axis=1, keepdims=True)
    shown_values = np.divide(cm, np.maximum(rows, 1)) if normalize else cm
    size = min(11.0, max(4.5, 0.36 * m + 1.9))
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    im = ax.imshow(shown_values, cmap=cmap, vmin=0)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class" if normalize else "images", fontsize=LABEL_PT)
    bar.ax.tick_params(labelsize=LABEL_PT)
    ticks = np.arange(m)
    rotate = m > 6 or max(len(n) for n in names) > 3
    ax.set_xticks(ticks, names, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=LABEL_PT)
    ax.set_yticks(ticks, names, fontsize=LABEL_PT)
    ax.set_xlabel("predicted class", fontsize=LABEL_PT + 1)
    ax.set_ylabel("true class", fontsize=LABEL_PT + 1)
    top = shown_values.max() if shown_values.size else 0
    for i, j in zip(*np.nonzero(cm > 0) if m > 12 else np.indices((m, m)).reshape(2, -1), strict=True):
        text = f"{cm[i, j]}" + (f"\n{shown_values[i, j]:.0%}" if normalize else "")
        colour = "white" if top and shown_values[i, j] > top / 2 else "black"
        ax.text(j, i, text, ha="center", va="center", fontsize=LABEL_PT, color=colour)
    ax.set_title(f"confusion matrix (accuracy {evaluation.accuracy:.1%}){_left_out(evaluation, hidden)}",
                 fontsize=TITLE_PT + 1)  # fmt: skip
    return fig


def roc_figure(evaluation: Evaluation, classes: Sequence[str] | None = None, max_curves: int = 10) -> Figure:
    """One-vs-rest ROC curve per class (or the given ``classes``) plus the micro and macro averages. Without
    ``classes``, at most ``max_curves`` classes get their own curve (those of `Evaluation.classes_to_show`); the
    averages always cover them all."""
    if classes is None:
        candidates = [evaluation.classes[c] for c in evaluation.classes_to_show(max_curves)]
        chosen = [c for c in candidates if c in evaluation.roc]
        hidden = sum(1 for c in evaluation.classes if c in evaluation.roc) - len(chosen)
    else:
        chosen, hidden = [str(c) for c in classes], 0
    fig, ax = plt.subplots(figsize=(8.5, 5.5), layout="constrained")
    for c in chosen:
        if c in evaluation.roc:
            fpr, tpr, _ = evaluation.roc[c]
            ax.plot(fpr, tpr, lw=1, label=f"{_short(c)} (AUC {evaluation.roc_auc[c]:.3f})")
    for avg, style in (("micro", ":"), ("macro", "--")):
        if avg in evaluation.roc:
            fpr, tpr, _ = evaluation.roc[avg]
            ax.plot(fpr, tpr, style, lw=2, color="black", label=f"{avg} average (AUC {evaluation.roc_auc[avg]:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8)
    ax.set_xlabel("false positive rate (share of other classes' images taken for this class)", fontsize=LABEL_PT)
    ax.set_ylabel("true positive rate (share of the class found)", fontsize=LABEL_PT)
    ax.tick_params(labelsize=LABEL_PT)
    more = f"\n{hidden} more classes only in the averages" if hidden else ""
    ax.set_title(f"ROC curves (one class vs rest){more}", fontsize=TITLE_PT + 1)
    ax.legend(fontsize=LABEL_PT, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def metrics_figure(evaluation: Evaluation, max_classes: int = 25) -> Figure:
    """Grouped bars of precision, recall and F1 per class, with the support under each class name; with more
    than ``max_classes`` classes only those of `Evaluation.classes_to_show` (the title says how many are left
    out)."""
    shown, hidden = _shown(evaluation, max_classes)
    classes = [evaluation.classes[c] for c in shown]
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(min(11.5, max(6.5, 0.42 * len(classes) + 2.5)), 4.6), layout="constrained")
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [evaluation.report[c][metric] for c in classes], 0.27, label=metric)
    labels = [f"{_short(c, 14)}\n(n={evaluation.report[c]['support']})" for c in classes]
    rotate = len(classes) > 12 or max(len(c) for c in classes) > 6
    ax.set_xticks(x, labels, fontsize=LABEL_PT, rotation=60 if rotate else 0, ha="right" if rotate else "center")
    ax.set_ylim(0, 1.25)
    ax.tick_params(axis="y", labelsize=LABEL_PT)
    ax.axhline(evaluation.no_information_rate, color="gray", ls="--", lw=0.8, label="no-information rate")
    ax.legend(fontsize=LABEL_PT, ncols=4, loc="upper center")
    ax.set_title(f"per-class precision, recall and F1{_left_out(evaluation, hidden)}", fontsize=TITLE_PT + 1)
    return fig


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _pixels(item: ImageInput) -> np.ndarray:
    return np.asarray(load_image(item), dtype=np.float32) / 255.0


def samples_figure(
    dataset: ImageDataset[ImageInput],
    indices: Iterable[SupportsInt] | None = None,
    per_class: int = 6,
    evaluation: Evaluation | None = None,
    max_classes: int = 12,
) -> Figure:
    """A grid with one row per true class: up to ``per_class`` samples of ``dataset``, for at most
    ``max_classes`` classes (those with the most samples to show; the title says how many were left out).

    Without ``evaluation``, ``indices`` are dataset indices. With the ``evaluation`` of this dataset, ``indices``
    are evaluation rows (e.g. ``evaluation.groups.false_negatives["3"]``) and each sample is titled with its
    predicted class and probability (green when right, red when wrong).
    """
    classes = list(getattr(dataset, "classes", []))
    picks: list[tuple[int, int, int | None]]
    if evaluation is not None:
        rows = range(len(evaluation.y_true)) if indices is None else [int(i) for i in indices]
        picks = [(int(evaluation.positions[r]), int(evaluation.y_true[r]), r) for r in rows]
    else:
        labels = getattr(dataset, "labels", None)
        chosen = range(len(dataset)) if indices is None else [int(i) for i in indices]
        picks = [(i, int(labels[i]) if labels is not None else int(dataset[i][1]), None) for i in chosen]
    by_class: dict[int, list[tuple[int, int | None]]] = {}
    found: dict[int, int] = {}
    for position, label, row in picks:
        found[label] = found.get(label, 0) + 1
        if len(by_class.setdefault(label, [])) < per_class:
            by_class[label].append((position, row))
    if not by_class:
        raise CnnlensError("No samples to show; the index list is empty.")
    labels_shown = sorted(sorted(by_class, key=lambda c: (-found[c], c))[: int(max_classes)])
    hidden = len(by_class) - len(labels_shown)
    cols = max(len(by_class[c]) for c in labels_shown)
    fig, axes = plt.subplots(
        len(labels_shown), cols, figsize=(1.5 * cols + 1.6, 1.6 * len(labels_shown) + 0.4), squeeze=False
    )
    for r, label in enumerate(labels_shown):
        name = classes[label] if label < len(classes) else str(label)
        axes[r, 0].set_ylabel(_short(name, 16), rotation=0, ha="right", va="center", fontsize=LABEL_PT)
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(by_class[label]):
                ax.set_axis_off()
                continue
            position, row = by_class[label][c]
            ax.imshow(_pixels(dataset[position][0]))
            if row is not None and evaluation is not None:
                p = int(evaluation.y_pred[row])
                colour = "green" if p == label else "red"
                title = f"{_short(evaluation.classes[p], 10)} {evaluation.probabilities[row, p]:.0%}"
                ax.set_title(title, fontsize=LABEL_PT, color=colour)
    if hidden:
        fig.suptitle(f"{len(labels_shown)} of {len(by_class)} classes shown (those with the most samples)",
                     fontsize=TITLE_PT)  # fmt: skip
    fig.tight_layout()
    return fig
