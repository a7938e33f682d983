"""Tell the story: one self-contained HTML report per run (evaluation, errors, activations, explanations side by
side, explanation quality, plain-language notes), for a labelled data set or a few photos, and the offline demo."""

from ._demo import demo
from ._html import Report, Section
from ._notes import (
    accuracy_note,
    agreement_note,
    agreement_notes,
    class_notes,
    confidence_note,
    confusion_note,
    most_confused,
    recall_shift_note,
    shift_note,
    topk_overlap,
)
from ._options import sized_options
from ._photos import photo_report
from ._story import model_report

__all__ = [
    "Report",
    "Section",
    "accuracy_note",
    "agreement_note",
    "agreement_notes",
    "class_notes",
    "confidence_note",
    "confusion_note",
    "demo",
    "model_report",
    "most_confused",
    "photo_report",
    "recall_shift_note",
    "shift_note",
    "sized_options",
    "topk_overlap",
]
