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
from ._figures import (
    confusion_matrix_figure,
    metrics_figure,
    roc_figure,
    samples_figure,
)
from ._layer_attribution import layer_channels_figure, ranked_channels, spatial_map
from ._layers import channel_order, channels_figure, feature_maps_figure, filters_figure
from ._legend import LABEL_PT, TITLE_PT, add_colorbar, figure_layout, scale_words, tag_map
from ._maps import (
    REDUCTIONS,
    SIGNS,
    apply_sign,
    as_image,
    normalize_map,
    reduce_channels,
    resize_map,
    to_heatmap,
)
from ._notebook import explanation_figure as explanation_figure
from ._notebook import score_figure as score_figure
from ._notebook import scorecard_figure as scorecard_figure
from ._panels import compare_panel, explanation_panel, method_grid
from ._views import (
    VIEWS,
    alpha_scaling,
    blended_heat_map,
    colormap,
    default_cmap,
    draw_view,
    heat_map,
    map_colorbar,
    map_range,
    masked_image,
    original_image,
    render,
)

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "LABEL_PT",
    "REDUCTIONS",
    "SIGNS",
    "TITLE_PT",
    "VIEWS",
    "add_colorbar",
    "alpha_scaling",
    "apply_sign",
    "as_image",
    "blended_heat_map",
    "bounding_box",
    "channel_order",
    "channels_figure",
    "colormap",
    "compare_panel",
    "concept_gallery_figure",
    "concept_overlay_figure",
    "confusion_matrix_figure",
    "default_cmap",
    "draw_bounding_box",
    "draw_view",
    "error_concepts_figure",
    "explanation_panel",
    "feature_maps_figure",
    "figure_layout",
    "filters_figure",
    "heat_map",
    "layer_channels_figure",
    "map_range",
    "map_colorbar",
    "masked_image",
    "method_grid",
    "metrics_figure",
    "normalize_map",
    "ranked_channels",
    "original_image",
    "reduce_channels",
    "render",
    "resize_map",
    "roc_figure",
    "samples_figure",
    "scale_words",
    "spatial_map",
    "superpixel_boundaries",
    "tag_map",
    "to_heatmap",
]
