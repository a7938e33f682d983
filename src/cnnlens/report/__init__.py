"""Tell the story: one self-contained HTML report per run (evaluation, errors, activations, explanations side by
side, explanation quality, plain-language notes), for a labelled data set or a few photos, and the offline demo."""

from ._claims import agreement_claims, best_note, lead, same_computation
from ._demo import demo
from ._html import Report, Section
from ._method_choice import sized_options
from ._notes import (
    accuracy_note,
    agreement_note,
    class_notes,
    confidence_note,
    confusion_note,
    most_confused,
    recall_shift_note,
    shift_note,
    topk_overlap,
)
from ._photos import photo_report
from ._records import ExplainedImages, MethodRun
from ._source import Computed, Source
from ._story import as_classifier as as_classifier
from ._story import model_report

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "Computed",
    "ExplainedImages",
    "MethodRun",
    "Report",
    "Section",
    "Source",
    "accuracy_note",
    "agreement_claims",
    "agreement_note",
    "best_note",
    "class_notes",
    "confidence_note",
    "confusion_note",
    "demo",
    "lead",
    "model_report",
    "most_confused",
    "photo_report",
    "recall_shift_note",
    "same_computation",
    "shift_note",
    "sized_options",
    "topk_overlap",
]
