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
from cnnlens.inside._save import spread_layers as spread_layers

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "LayerInfo",
    "LayerSummary",
    "conv_filters",
    "feature_maps",
    "layer_summary",
    "save_inside",
    "top_channels",
]
