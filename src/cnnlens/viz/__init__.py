"""Pictures of explanations (matplotlib underneath). The full set of views grows with the show-and-tell work."""

from ._figures import (
    confusion_matrix_figure,
    feature_maps_figure,
    filters_figure,
    metrics_figure,
    roc_figure,
    samples_figure,
)
from ._maps import SIGNS, to_heatmap
from ._panels import explanation_panel

__all__ = [
    "SIGNS",
    "confusion_matrix_figure",
    "explanation_panel",
    "feature_maps_figure",
    "filters_figure",
    "metrics_figure",
    "roc_figure",
    "samples_figure",
    "to_heatmap",
]
