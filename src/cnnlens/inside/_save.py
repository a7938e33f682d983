"""Writing what is inside a model for one image: the layer summary and, for a few layers chosen for meaning, the
most active feature maps and the filters that have a picture to show (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.core.files import OutputFolder, output_folder, save_figure, write_text
from cnnlens.core.progress import honours_progress, progress_bar
from cnnlens.inside._inspect import conv_filters, feature_maps, layer_summary
from cnnlens.inside._recording import as_input, as_module
from cnnlens.models import Classifier

if TYPE_CHECKING:
    import torch

    from cnnlens.data import ImageInput


def spread_layers(names: Sequence[str], limit: int) -> list[str]:
    """At most ``limit`` of ``names`` (in model order), spread evenly over the depth: always the first and the
    last, the others at equal steps between."""
    names = list(names)
    if int(limit) < 1:
        raise CnnlensError(f"the number of layers must be at least 1; got {limit}")
    if len(names) <= limit:
        return names
    if limit == 1:
        return [names[-1]]
    step = (len(names) - 1) / (limit - 1)
    return [names[round(k * step)] for k in range(limit)]


def _has_picture(conv: nn.Conv2d, first: bool) -> bool:
    """Filters worth drawing: the first layer's (colours and edges), and any with a spatial kernel (a 1 x 1
    filter is one number per input channel: no pattern to see)."""
    return first or tuple(conv.kernel_size) != (1, 1)


@honours_progress
def save_inside(
    model: Classifier | nn.Module,
    image: ImageInput | torch.Tensor,
    out: str | os.PathLike[str] | OutputFolder,
    layers: str | Sequence[str] | None = None,
    *,
    max_layers: int = 6,
    max_maps: int = 16,
    progress: bool = True,
) -> dict[str, Path]:
    """For one image (or a (1, C, H, W) tensor) write ``layers.txt`` (the layer summary), and for each layer
    ``maps_<layer>.png`` (its ``max_maps`` most active feature maps, by mean activation) and, for convolutions
    with a spatial kernel and the first one, ``filters_<layer>.png`` (the first layer's in colour).

    ``layers``: names; default ``max_layers`` convolutions spread over the depth (the first and the last
    included). A bar (stderr) follows the layers; ``progress=False`` hides it. ``out`` is held as one run, as
    in `cnnlens.evaluation.save_evaluation` (atomic files, a manifest, an earlier run's files replaced, other
    files, symlinks and concurrent runs refused). Returns ``{name: path}``."""
    from cnnlens.viz import feature_maps_figure, filters_figure

    x = as_input(model, image)[:1]
    module = as_module(model)
    conv_modules = {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    convs = list(conv_modules)
    if layers is None:
        layers = spread_layers(convs, max_layers)
    elif isinstance(layers, str):
        layers = [layers]
    skipped = [n for n in layers if n in convs and not _has_picture(conv_modules[n], n == convs[0])]
    note = ""
    if skipped:
        note = f"\n1 x 1 convolutions without a filter picture (one weight per input channel): {', '.join(skipped)}\n"
    name = model.name if isinstance(model, Classifier) else type(model).__name__
    with output_folder(out, "save_inside", model=name, layers=list(layers)) as folder:
        summary = str(layer_summary(model, x)) + "\n" + note
        written = {"summary": write_text(folder.file("layers.txt"), summary)}
        maps = feature_maps(model, x, list(layers))
        for layer in progress_bar(layers, desc="inside", unit="layer", delay=2.0, leave=False):
            title = f"{layer}: the {max_maps} most active feature maps"
            fig = feature_maps_figure(maps[layer][0], max_maps, title, order="activation")
            written[f"maps_{layer}"] = save_figure(fig, folder.file(f"maps_{layer}.png"))
            if isinstance(module.get_submodule(layer), nn.Conv2d) and layer not in skipped:
                fig = filters_figure(conv_filters(model, layer), title=f"{layer}: filters")
                written[f"filters_{layer}"] = save_figure(fig, folder.file(f"filters_{layer}.png"))
    return written
