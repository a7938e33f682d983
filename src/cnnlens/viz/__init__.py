"""Pictures of explanations and evaluations (matplotlib underneath, Agg backend; NumPy arrays in and out).

Maps: :func:`to_heatmap` (channel reduction, resize, sign mode, outlier-percentile normalisation). Views of one
map, each an RGB array ``(H, W, 3)`` in [0, 1]: :func:`heat_map`, :func:`blended_heat_map`, :func:`masked_image`,
:func:`alpha_scaling`, :func:`original_image`; :func:`draw_view` draws any of them on an axes. Masks and boxes:
:func:`superpixel_boundaries`, :func:`bounding_box`, :func:`draw_bounding_box`. Figures: :func:`compare_panel`,
:func:`method_grid`, :func:`explanation_panel` and the evaluation / inside figures. Legends: every map figure
carries a colour bar saying what the colours mean (:func:`map_colorbar`, :func:`scale_words`); type is at least
``LABEL_PT`` points; :func:`figure_layout` tells where maps, colour bars and labels are in a saved figure.
"""

from ._boxes import bounding_box, draw_bounding_box, superpixel_boundaries
from ._figures import (
    confusion_matrix_figure,
    metrics_figure,
    roc_figure,
    samples_figure,
)
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
    "confusion_matrix_figure",
    "default_cmap",
    "draw_bounding_box",
    "draw_view",
    "explanation_panel",
    "feature_maps_figure",
    "figure_layout",
    "filters_figure",
    "heat_map",
    "map_range",
    "map_colorbar",
    "masked_image",
    "method_grid",
    "metrics_figure",
    "normalize_map",
    "original_image",
    "reduce_channels",
    "render",
    "resize_map",
    "roc_figure",
    "samples_figure",
    "scale_words",
    "superpixel_boundaries",
    "tag_map",
    "to_heatmap",
]
