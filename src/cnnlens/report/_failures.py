"""The report's "Where it fails" section: the most confused pairs of classes (`ErrorGroup`), each shown as its
misread images next to correctly read images of both classes, with a table of the misread ones in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _notes as notes
from ._figures import SampleRow, rows_figure
from ._html import Report


@dataclass(frozen=True)
class ErrorGroup:
    """The images of ``true_label`` read as ``predicted_label``: how many (``count``), the mean probability the
    model gave its wrong answer (``confidence``), and evaluation rows, most confident first, of the ``errors`` and
    of correctly read images (true positives) of the true and of the predicted label."""

    true_label: str
    predicted_label: str
    count: int
    confidence: float
    errors: tuple[int, ...]
    correct_true: tuple[int, ...]
    correct_predicted: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """As the report's ``metrics.json`` lists it."""
        return {"true": self.true_label, "predicted": self.predicted_label, "count": self.count,
                "confidence": self.confidence}  # fmt: skip


def pixels(classifier: Any, images: list[Any]) -> np.ndarray:
    """``images`` as the model sees them (preprocessed), back as pixels in [0, 1]."""
    return classifier.preprocessing.to_pixels(classifier.preprocess(images))


def _by_confidence(ev: Any, rows: np.ndarray) -> tuple[int, ...]:
    rows = np.asarray(rows, dtype=np.int64)
    conf = ev.probabilities[rows, ev.y_pred[rows]]
    return tuple(int(r) for r in rows[np.argsort(-conf, kind="stable")])


def error_groups(ev: Any, max_groups: int) -> list[ErrorGroup]:
    """The most confused (true, predicted) pairs of an Evaluation, each with its errors and the true positives
    of both classes, most confident first."""
    pairs = [(n, t, p, ev.groups.confused(t, p)) for t, p, n in ev.confused_pairs(int(max_groups))]
    return [
        ErrorGroup(
            true_label=t,
            predicted_label=p,
            count=n,
            confidence=float(ev.probabilities[rows, ev.y_pred[rows]].mean()),
            errors=_by_confidence(ev, rows),
            correct_true=_by_confidence(ev, ev.groups.true_positives[t]),
            correct_predicted=_by_confidence(ev, ev.groups.true_positives[p]),
        )
        for n, t, p, rows in pairs
    ]


def failures_section(
    report: Report, classifier: Any, dataset: Any, ev: Any, groups: list[ErrorGroup], *, per_group: int, focus: str
) -> list[str]:
    """The "Where it fails" section on the data set called ``focus`` (``per_group`` images of each kind per
    group); returns its notes."""
    if not groups:
        report.section(
            "Where it fails", f"The model makes no mistakes on the {len(ev.y_true)} images of the {focus}."
        ).text("There is no mistake to show; the explanations below show what its right answers rest on.")
        return []
    s = report.section(
        "Where it fails",
        f"The most frequent mistakes on the {focus}. Each group shows the misread images next to images of the "
        "true class and of the predicted class that the model gets right, to compare what it sees. Above each "
        "image: the model's answer and how sure it was.",
    )
    errors = len(ev.groups.most_confident_errors)
    said = [notes.confusion_note([(g.true_label, g.predicted_label, g.count) for g in groups], errors)]
    for g in groups:
        t, p = g.true_label, g.predicted_label
        picks = [
            (f"{t} read as {p}", g.errors[:per_group]),
            (f"correct {t}", g.correct_true[:per_group]),
            (f"correct {p}", g.correct_predicted[:per_group]),
        ]
        rows = [_sample_row(classifier, dataset, ev, label, chosen) for label, chosen in picks]
        s.figure(rows_figure(rows), f"{t} read as {p} ({g.count}): errors, then correct {t} and correct {p}")
        s.table(_error_rows(ev, g.errors[:per_group]), caption=f"The {t} read as {p} shown above")
        said.append(notes.group_note(t, p, g.count, g.confidence))
    s.notes(said)
    return [n for n in said if n]


def _sample_row(classifier: Any, dataset: Any, ev: Any, label: str, chosen: tuple[int, ...]) -> SampleRow:
    """The images of evaluation rows ``chosen``, each titled with the model's answer and how sure it was."""
    images = [dataset[int(ev.positions[r])][0] for r in chosen]
    shown = list(pixels(classifier, images)) if images else []
    titles = [f"{ev.classes[ev.y_pred[r]]} {ev.probabilities[r, ev.y_pred[r]]:.0%}" for r in chosen]
    return SampleRow(label=label, images=shown, titles=titles)


def _error_rows(ev: Any, rows: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per misread image, in plain words: its answer, how sure, the true class's probability, the
    second choice."""
    table = []
    for r in rows:
        t, p = int(ev.y_true[r]), int(ev.y_pred[r])
        second = int(np.argsort(-ev.probabilities[r], kind="stable")[1]) if len(ev.classes) > 1 else p
        table.append(
            {
                "image": ev.ids[r],
                "true class": ev.classes[t],
                "read as": ev.classes[p],
                "how sure": notes.pct(ev.probabilities[r, p]),
                "probability of the true class": notes.pct(ev.probabilities[r, t]),
                "second choice": f"{ev.classes[second]} ({notes.pct(ev.probabilities[r, second])})",
            }
        )
    return table
