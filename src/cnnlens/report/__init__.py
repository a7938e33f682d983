"""Tell the story: one self-contained HTML report per run (evaluation, errors, activations, explanations side by
side, explanation quality, plain-language notes), for a labelled data set or a few photos, and the offline demo."""

from ._claims import agreement_claims, best_note, lead, same_computation
from ._demo import demo
from ._html import Report, Section
from ._method_choice import sized_options
from ._photos import photo_report
from ._records import ExplainedImages as ExplainedImages
from ._records import MethodRun as MethodRun
from ._source import Computed as Computed
from ._source import Source as Source
from ._story import as_classifier as as_classifier
from ._story import model_report

# __all__ lists what users call; the names imported as themselves ("x as x") are what other cnnlens packages
# (and the tests) use.
__all__ = [
    "Report",
    "Section",
    "agreement_claims",
    "best_note",
    "demo",
    "lead",
    "model_report",
    "photo_report",
    "same_computation",
    "sized_options",
]
