"""`Evaluation`: classification metrics (scikit-learn underneath) computed from labels and probabilities."""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, SupportsInt

import numpy as np
from sklearn import metrics

from cnnlens.core.display import Displayable
from cnnlens.core.errors import CnnlensError
from cnnlens.core.files import atomic_open
from cnnlens.evaluation._groups import Groups, make_groups

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

DENSE_JSON_CLASSES = 100
"""Up to this many classes `Evaluation.to_dict` holds the full confusion matrix; beyond, only its non-empty cells
(``confusion_cells``), so that the file stays small for 1,000 or 10,000 classes."""


@dataclass(repr=False, init=False)
class Evaluation(Displayable):
    """Predictions of a classifier on a dataset and the metrics computed from them (in a notebook: the summary
    and the confusion matrix; ``.plot(kind)``).

    ``report[c]`` = ``{"precision", "recall", "f1", "support"}`` per class name; ``averages`` the same for
    ``"micro"``, ``"macro"`` and ``"weighted"``. ``roc[c]`` = ``(fpr, tpr, thresholds)`` one-vs-rest per class,
    plus ``"micro"`` and ``"macro"`` curves; ``roc_auc`` the areas (``nan`` for a class absent from ``y_true``;
    ``"macro"`` averages the classes that have an AUC). ``skipped`` lists ``(sample id, reason)`` left out;
    ``positions[i]`` is the dataset index of row ``i`` (rows and dataset indices differ when samples were skipped).
    """

    y_true: np.ndarray
    probabilities: np.ndarray
    classes: list[str]
    ids: list[str]
    skipped: list[tuple[str, str]]
    positions: np.ndarray

    def __init__(
        self,
        y_true: ArrayLike,
        probabilities: ArrayLike,
        classes: Iterable[object],
        ids: Iterable[object] | None = None,
        skipped: list[tuple[str, str]] | None = None,
        positions: ArrayLike | None = None,
    ) -> None:
        self.y_true = np.asarray(y_true, dtype=np.int64)
        self.classes = [str(c) for c in classes]
        self.ids = [str(i) for i in range(len(self.y_true))] if ids is None else [str(i) for i in ids]
        self.skipped = [] if skipped is None else skipped
        self.positions = np.arange(len(self.y_true)) if positions is None else np.asarray(positions)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        n, k = len(self.y_true), len(self.classes)
        if self.probabilities.shape != (n, k):
            raise CnnlensError(f"probabilities must be (N, K) = ({n}, {k}); got {self.probabilities.shape}.")
        if len(self.ids) != n:
            raise CnnlensError(f"Need one id per sample: {n} samples, {len(self.ids)} ids.")
        if n == 0:
            raise CnnlensError("Nothing to evaluate: no samples (see .skipped for files that could not be read).")
        if self.y_true.min() < 0 or self.y_true.max() >= k:
            raise CnnlensError(
                f"Labels must be class indices 0..{k - 1}; got {self.y_true.min()}..{self.y_true.max()}."
            )
        labels = np.arange(k)
        self.y_pred = self.probabilities.argmax(axis=1)
        self.accuracy = float(metrics.accuracy_score(self.y_true, self.y_pred))
        p, r, f, s = metrics.precision_recall_fscore_support(self.y_true, self.y_pred, labels=labels, zero_division=0)
        self.report = {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(self.classes)
        }
        self.averages = {}
        for avg in ("micro", "macro", "weighted"):
            pa, ra, fa, _ = metrics.precision_recall_fscore_support(
                self.y_true, self.y_pred, labels=labels, average=avg, zero_division=0
            )
            self.averages[avg] = {"precision": float(pa), "recall": float(ra), "f1": float(fa), "support": n}
        self.no_information_rate = float(np.bincount(self.y_true, minlength=k).max() / n)
        self.roc, self.roc_auc = _roc(self.y_true, self.probabilities, self.classes)
        self.groups: Groups = make_groups(self.y_true, self.y_pred, self.probabilities, self.classes)

    @functools.cached_property
    def confusion_matrix(self) -> np.ndarray:
        """``(K, K)`` counts, rows = true class, columns = predicted class (made on first use: with many classes
        it is large, and `confused_pairs` gives the non-empty cells without it)."""
        labels = np.arange(len(self.classes))
        return metrics.confusion_matrix(self.y_true, self.y_pred, labels=labels)

    def confusion_cells(self) -> list[tuple[int, int, int]]:
        """The non-empty cells of the confusion matrix as ``(true index, predicted index, count)``, row-major;
        at most one per sample, so small however many classes the model has."""
        k = len(self.classes)
        cells, counts = np.unique(self.y_true * k + self.y_pred, return_counts=True)
        return [(int(c // k), int(c % k), int(n)) for c, n in zip(cells, counts, strict=True)]

    def confused_pairs(self, n: int | None = None) -> list[tuple[str, str, int]]:
        """The most frequent mistakes as ``(true class, predicted class, count)``, most frequent first (ties in
        row-major order of the confusion matrix); ``n``: at most that many."""
        wrong = sorted((-c, t, p) for t, p, c in self.confusion_cells() if t != p)
        pairs = [(self.classes[t], self.classes[p], -c) for c, t, p in wrong]
        return pairs if n is None else pairs[: int(n)]

    def classes_to_show(self, limit: int = 20) -> list[int]:
        """Indices (ascending) of at most ``limit`` classes for a figure or a table: every class when there are
        no more than ``limit``; else the classes that occur in the data or among the answers, those with the most
        mistakes (missed plus wrongly given), then the most images, first. The rest are summarised by callers."""
        k = len(self.classes)
        if int(limit) < 1:
            raise CnnlensError(f"limit must be at least 1; got {limit}.")
        if k <= int(limit):
            return list(range(k))
        wrong = self.y_true != self.y_pred
        errors = np.bincount(self.y_true[wrong], minlength=k) + np.bincount(self.y_pred[wrong], minlength=k)
        support = np.bincount(self.y_true, minlength=k)
        present = np.flatnonzero((support > 0) | (np.bincount(self.y_pred, minlength=k) > 0))
        ranked = sorted(present, key=lambda c: (-errors[c], -support[c], c))
        return sorted(int(c) for c in ranked[: int(limit)])

    def plot(self, kind: str = "confusion_matrix") -> Figure:
        """A Figure: ``confusion_matrix`` (default), ``metrics`` (per-class precision, recall, F1) or ``roc``;
        with many classes those in the data and the most confused (`classes_to_show`)."""
        from cnnlens import viz

        figures: dict[str, Callable[[Evaluation], Figure]] = {
            "confusion_matrix": viz.confusion_matrix_figure,
            "metrics": viz.metrics_figure,
            "roc": viz.roc_figure,
        }
        if kind not in figures:
            raise CnnlensError(f"kind must be one of {', '.join(figures)}; got {kind!r}.")
        return figures[kind](self)

    def _summary(self) -> list[tuple[str, str]]:
        return [
            ("samples", f"{len(self.y_true)}" + (f" ({len(self.skipped)} skipped)" if self.skipped else "")),
            ("classes", f"{len(self.classes)}"),
            ("accuracy", f"{self.accuracy:.1%}"),
            ("no-information rate", f"{self.no_information_rate:.1%}"),
            ("macro F1", f"{self.averages['macro']['f1']:.3f}"),
            ("macro AUC", f"{self.roc_auc['macro']:.3f}"),
        ]

    def __repr__(self) -> str:
        return (
            f"Evaluation(samples={len(self.y_true)}, classes={len(self.classes)}, accuracy={self.accuracy:.4f}, "
            f"skipped={len(self.skipped)})"
        )

    def top_k_accuracy(self, k: int) -> float:
        """Fraction of samples whose true class is among the ``k`` most probable."""
        if not 1 <= int(k) <= len(self.classes):
            raise CnnlensError(f"k must be between 1 and the number of classes ({len(self.classes)}); got {k}.")
        if k == 1:
            return self.accuracy
        if k == len(self.classes):
            return 1.0
        labels = np.arange(len(self.classes))
        return float(metrics.top_k_accuracy_score(self.y_true, self.probabilities, k=int(k), labels=labels))

    def probability_table(self, top: int = 3) -> list[dict[str, object]]:
        """One row per sample: id, true and predicted class, correct, p(true), p(predicted), top classes."""
        top = min(int(top), len(self.classes))
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :top]
        rows = []
        for i in range(len(self.y_true)):
            t, p = int(self.y_true[i]), int(self.y_pred[i])
            row: dict[str, object] = {
                "index": i,
                "id": self.ids[i],
                "true": self.classes[t],
                "predicted": self.classes[p],
                "correct": t == p,
                "p_true": round(float(self.probabilities[i, t]), 6),
                "p_predicted": round(float(self.probabilities[i, p]), 6),
            }
            for j, c in enumerate(order[i], start=1):
                row[f"top{j}"] = self.classes[int(c)]
                row[f"p_top{j}"] = round(float(self.probabilities[i, c]), 6)
            rows.append(row)
        return rows

    def to_csv(self, path: str | os.PathLike[str], top: int = 3, rows: Iterable[SupportsInt] | None = None) -> Path:
        """Write the probability table (optionally only ``rows``, e.g. a group) as CSV (atomically; a symlink at
        ``path`` is refused); returns the path."""
        full = self.probability_table(top)
        table = full if rows is None else [full[int(i)] for i in rows]
        path = Path(path)
        fields = list(full[0])
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:  # whole or not at all
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(table)
        return path

    def to_dict(self) -> dict[str, object]:
        """The metrics as plain JSON-able values (NaN AUCs become ``None``)."""

        def num(v: float) -> float | None:
            return None if np.isnan(v) else round(float(v), 6)

        return {
            "samples": len(self.y_true),
            "classes": self.classes,
            "accuracy": num(self.accuracy),
            "no_information_rate": num(self.no_information_rate),
            "top_k_accuracy": {k: num(self.top_k_accuracy(k)) for k in (1, 3, 5) if k <= len(self.classes)},
            "report": self.report,
            "averages": self.averages,
            "roc_auc": {c: num(v) for c, v in self.roc_auc.items()},
            "confusion_matrix": self.confusion_matrix.tolist() if len(self.classes) <= DENSE_JSON_CLASSES else None,
            "confusion_cells": [list(c) for c in self.confusion_cells()],
            "groups": self.groups.counts(),
            "most_confident_errors": [self.ids[i] for i in self.groups.most_confident_errors[:20]],
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
        }

    def summary(self) -> str:
        """A plain-text summary: accuracy against the no-information rate, macro F1 and AUC, worst classes."""
        present = [c for c in self.classes if self.report[c]["support"] > 0]  # classes absent from the data: F1 0
        worst = sorted(((c, self.report[c]) for c in present), key=lambda kv: kv[1]["f1"])[:3]
        lines = [
            f"{len(self.y_true)} samples, {len(self.classes)} classes"
            + (f", {len(self.skipped)} skipped" if self.skipped else ""),
            f"accuracy {self.accuracy:.1%} (no-information rate {self.no_information_rate:.1%})",
            f"macro F1 {self.averages['macro']['f1']:.3f}, macro AUC {self.roc_auc['macro']:.3f}, "
            f"micro AUC {self.roc_auc['micro']:.3f}",
            "lowest F1: " + ", ".join(f"{c} {m['f1']:.2f}" for c, m in worst),
        ]
        return "\n".join(lines)


def _roc(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> tuple[dict, dict[str, float]]:
    k = len(classes)
    onehot = np.eye(k, dtype=np.int64)[y_true]
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    auc: dict[str, float] = {}
    for i, c in enumerate(classes):
        pos = int(onehot[:, i].sum())
        if 0 < pos < len(y_true):
            curves[c] = metrics.roc_curve(onehot[:, i], probs[:, i])
            auc[c] = float(metrics.roc_auc_score(onehot[:, i], probs[:, i]))
        else:
            auc[c] = float("nan")
    fpr, tpr, thr = metrics.roc_curve(onehot.ravel(), probs.ravel())
    curves["micro"] = (fpr, tpr, thr)
    auc["micro"] = float(metrics.auc(fpr, tpr))
    defined = [c for c in classes if c in curves]
    auc["macro"] = float(np.mean([auc[c] for c in defined])) if defined else float("nan")
    if defined:
        grid = np.unique(np.concatenate([curves[c][0] for c in defined]))
        mean_tpr = np.mean([np.interp(grid, curves[c][0], curves[c][1]) for c in defined], axis=0)
        curves["macro"] = (grid, mean_tpr, np.full(len(grid), np.nan))
    return curves, auc
