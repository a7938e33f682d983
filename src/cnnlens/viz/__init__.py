"""Pictures of explanations and evaluations (matplotlib underneath, Agg backend; NumPy arrays in and out).

Maps: :func:`to_heatmap` (channel reduction, resize, sign mode, outlier-percentile normalisation). Views of one
map, each an RGB array ``(H, W, 3)`` in [0, 1]: :func:`heat_map`, :func:`blended_heat_map`, :func:`masked_image`,
:func:`alpha_scaling`, :func:`original_image`; :func:`draw_view` draws any of them on an axes. Masks and boxes:
:func:`superpixel_boundaries`, :func:`bounding_box`, :func:`draw_bounding_box`. Figures: :func:`compare_panel`,
:func:`method_grid`, :func:`explanation_panel` and the evaluation / inside figures. Layer attributions:
:func:`layer_channels_figure` (ranked channels with their feature maps), :func:`ranked_channels`, :func:`spatial_map`.
Legends: every map figure carries a colour bar saying what the colours mean (:func:`map_colorbar`,
:func:`scale_words`); type is at least ``LABEL_PT`` points; :func:`figure_layout` tells where maps, colour bars and
labels are in a saved figure.
Concepts (``cnnlens.concepts``): :func:`concept_gallery_figure`, :func:`concept_overlay_figure`,
:func:`error_concepts_figure`.
"""

from ._boxes import bounding_box, draw_bounding_box, superpixel_boundaries
from ._concepts import concept_gallery_figure, concept_overlay_figure, error_concepts_figure
from ._figures import confusion_matrix_figure, metrics_figure, roc_figure, samples_figure
from ._layer_attribution import layer_channels_figure, ranked_channels, spatial_map
from ._layers import channel_order as channel_order
from ._layers import channels_figure, feature_maps_figure, filters_figure
from ._legend import LABEL_PT, figure_layout, scale_words
from ._legend import TITLE_PT as TITLE_PT
from ._legend import add_colorbar as add_colorbar
from ._maps import SIGNS as SIGNS
from ._maps import reduce_channels as reduce_channels
from ._maps import resize_map as resize_map
from ._maps import to_heatmap
from ._notebook import explanation_figure as explanation_figure
from ._notebook import score_figure as score_figure
from ._notebook import scorecard_figure as scorecard_figure
from ._panels import compare_panel, explanation_panel, method_grid
from ._views import VIEWS as VIEWS
from ._views import (
    alpha_scaling,
    blended_heat_map,
    colormap,
    draw_view,
    heat_map,
    map_colorbar,
    masked_image,
    original_image,
)
from ._views import default_cmap as default_cmap
from ._views import map_range as map_range
from ._views import render as render

# __all__ lists what users call; the names imported as themselves ("x as x") are what other cnnlens packages
# (and the tests) use.
__all__ = [
    "LABEL_PT",
    "alpha_scaling",
    "blended_heat_map",
    "bounding_box",
    "channels_figure",
    "colormap",
    "compare_panel",
    "concept_gallery_figure",
    "concept_overlay_figure",
    "confusion_matrix_figure",
    "draw_bounding_box",
    "draw_view",
    "error_concepts_figure",
    "explanation_panel",
    "feature_maps_figure",
    "figure_layout",
    "filters_figure",
    "heat_map",
    "layer_channels_figure",
    "map_colorbar",
    "masked_image",
    "method_grid",
    "metrics_figure",
    "original_image",
    "ranked_channels",
    "roc_figure",
    "samples_figure",
    "scale_words",
    "spatial_map",
    "superpixel_boundaries",
    "to_heatmap",
]
