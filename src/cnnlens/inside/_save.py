"""Writing what is inside a model for one image: layer summary, filter grids and feature-map grids (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cnnlens._files import OutputFolder, output_folder, save_figure, write_text
from cnnlens.inside._capture import as_input, as_module
from cnnlens.inside._inspect import conv_filters, feature_maps, layer_summary
from cnnlens.models import Classifier


def save_inside(
    model: Classifier | nn.Module,
    image: Any,
    out: str | os.PathLike[str] | OutputFolder,
    layers: str | Sequence[str] | None = None,
) -> dict[str, Path]:
    """For one image (or a (1, C, H, W) tensor) write ``layers.txt`` (the layer summary), and for each layer
    (default: every ``nn.Conv2d``) ``maps_<layer>.png`` and, for convolutions, ``filters_<layer>.png``.

    ``out`` is held as one run, as in `cnnlens.evaluate.save_evaluation` (atomic files, a manifest, an earlier
    run's files replaced, other files, symlinks and concurrent runs refused). Returns ``{name: path}``."""
    from cnnlens.viz import feature_maps_figure, filters_figure

    x = as_input(model, image)[:1]
    module = as_module(model)
    if layers is None:
        layers = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    elif isinstance(layers, str):
        layers = [layers]
    name = model.name if isinstance(model, Classifier) else type(model).__name__
    with output_folder(out, "save_inside", model=name, layers=list(layers)) as folder:
        written = {"summary": write_text(folder.file("layers.txt"), str(layer_summary(model, x)) + "\n")}
        maps = feature_maps(model, x, list(layers))
        for layer in layers:
            fig = feature_maps_figure(maps[layer][0], title=f"{layer}: feature maps")
            written[f"maps_{layer}"] = save_figure(fig, folder.file(f"maps_{layer}.png"))
            if isinstance(module.get_submodule(layer), nn.Conv2d):
                fig = filters_figure(conv_filters(model, layer), title=f"{layer}: filters")
                written[f"filters_{layer}"] = save_figure(fig, folder.file(f"filters_{layer}.png"))
    return written
