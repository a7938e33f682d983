"""Pictures of explanations (matplotlib underneath). The full set of views grows with the show-and-tell work."""

from ._maps import SIGNS, to_heatmap
from ._panels import explanation_panel

__all__ = ["SIGNS", "explanation_panel", "to_heatmap"]
