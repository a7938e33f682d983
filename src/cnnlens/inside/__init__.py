"""Look inside a CNN: layer summary, conv filters, feature maps of named (also nested) layers, top channels."""

from cnnlens.inside._inspect import (
    LayerInfo,
    LayerSummary,
    conv_filters,
    feature_maps,
    layer_summary,
    top_channels,
)
from cnnlens.inside._save import save_inside

__all__ = [
    "LayerInfo",
    "LayerSummary",
    "conv_filters",
    "feature_maps",
    "layer_summary",
    "save_inside",
    "top_channels",
]
