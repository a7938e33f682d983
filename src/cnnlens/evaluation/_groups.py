"""Misclassification groups: true positives, false positives and false negatives per class; confident errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, repr=False)
class Groups:
    """Sample indices per group, keyed by class name.

    ``true_positives[c]``: true ``c``, predicted ``c``. ``false_negatives[c]``: true ``c``, predicted another
    class. ``false_positives[c]``: predicted ``c``, true another class. ``most_confident_errors``: all
    misclassified samples, most confident (highest predicted probability) first.
    """

    true_positives: dict[str, np.ndarray]
    false_positives: dict[str, np.ndarray]
    false_negatives: dict[str, np.ndarray]
    most_confident_errors: np.ndarray
    _y_true: np.ndarray
    _y_pred: np.ndarray
    _classes: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Groups(classes={len(self._classes)}, errors={len(self.most_confident_errors)})"

    def confused(self, true: str | int, predicted: str | int) -> np.ndarray:
        """Indices of samples of class ``true`` predicted as ``predicted`` (names or indices)."""
        t, p = (self._classes.index(c) if isinstance(c, str) else int(c) for c in (true, predicted))
        return np.flatnonzero((self._y_true == t) & (self._y_pred == p))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{class: {"tp": n, "fp": n, "fn": n}}``."""
        return {
            c: {
                "tp": len(self.true_positives[c]),
                "fp": len(self.false_positives[c]),
                "fn": len(self.false_negatives[c]),
            }
            for c in self._classes
        }


def make_groups(y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> Groups:
    tp, fp, fn = {}, {}, {}
    for k, name in enumerate(classes):
        tp[name] = np.flatnonzero((y_true == k) & (y_pred == k))
        fp[name] = np.flatnonzero((y_true != k) & (y_pred == k))
        fn[name] = np.flatnonzero((y_true == k) & (y_pred != k))
    wrong = np.flatnonzero(y_true != y_pred)
    confidence = probabilities[wrong, y_pred[wrong]] if len(wrong) else np.zeros(0)
    order = wrong[np.argsort(-confidence, kind="stable")]
    return Groups(tp, fp, fn, order, y_true, y_pred, tuple(classes))
