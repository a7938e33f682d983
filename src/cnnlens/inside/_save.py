"""Writing what is inside a model for one image: layer summary, filter grids and feature-map grids (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cnnlens.inside._capture import as_input, as_module
from cnnlens.inside._inspect import conv_filters, feature_maps, layer_summary
from cnnlens.models import Classifier


def save_inside(
    model: Classifier | nn.Module, image: Any, out: str | os.PathLike[str], layers: str | Sequence[str] | None = None
) -> dict[str, Path]:
    """For one image (or a (1, C, H, W) tensor) write ``layers.txt`` (the layer summary), and for each layer
    (default: every ``nn.Conv2d``) ``maps_<layer>.png`` and, for convolutions, ``filters_<layer>.png``."""
    import matplotlib.pyplot as plt

    from cnnlens.viz import feature_maps_figure, filters_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x = as_input(model, image)[:1]
    module = as_module(model)
    if layers is None:
        layers = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    elif isinstance(layers, str):
        layers = [layers]
    written = {"summary": out / "layers.txt"}
    written["summary"].write_text(str(layer_summary(model, x)) + "\n")
    maps = feature_maps(model, x, list(layers))
    for name in layers:
        figures = {f"maps_{name}": feature_maps_figure(maps[name][0], title=f"{name}: feature maps")}
        if isinstance(module.get_submodule(name), nn.Conv2d):
            figures[f"filters_{name}"] = filters_figure(conv_filters(model, name), title=f"{name}: filters")
        for key, fig in figures.items():
            written[key] = out / f"{key}.png"
            fig.savefig(written[key], dpi=110, bbox_inches="tight")
            plt.close(fig)
    return written
