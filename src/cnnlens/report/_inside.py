"""The report's "Inside the model" section: feature maps of an error and of a correct image, the layer table,
and how the error's final features compare with correct images of both classes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._capture import capture
from .._errors import CnnlensError
from .._guard import frozen
from . import _notes as notes
from ._html import Report


def _conv_layers(module: nn.Module) -> list[str]:
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if len(names) <= 3:
        return names
    return [names[0], names[len(names) // 2], names[-1]]


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two feature vectors."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else 0.0


def final_features(classifier: Any, images: list[Any]) -> tuple[str, torch.Tensor] | None:
    """(name, input) of the model's last Linear layer for ``images``: the features its decision is made from.
    Eval mode without gradients; the model is left as it was, also on error."""
    module = classifier.module
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    name, last = linears[-1]
    x = classifier.preprocess(images)
    try:
        with frozen(module), torch.no_grad(), capture([last], inputs=True, reused="last", names=[name]) as seen:
            module(x)
    except CnnlensError:  # the last Linear does not run (or gives no tensor): no comparison to make
        return None
    return name, seen[0].detach().flatten(1).cpu()


def driving_channels(s: Any, classifier: Any, image: Any, index: int, true: str, predicted: str) -> str:
    """The channels of the last convolution that carry the evidence for the wrong class in a misread image
    (layer gradient x activation for the predicted class), with their feature maps; returns the note."""
    from ..attribution import explain
    from ..models import last_conv_layer
    from ..viz import layer_channels_figure, ranked_channels

    layer = last_conv_layer(classifier)
    x = classifier.preprocess([image])
    e = explain(classifier, x, "layer_gradient_x_activation", layer=layer, target=index)
    pixels = classifier.preprocessing.to_pixels(x)[0]
    fig = layer_channels_figure(
        e.attributions[0], e.info["activations"][0], pixels, top=8, title=f"{layer}: evidence for '{predicted}'"
    )
    s.figure(fig, f"Channels of {layer} that push the misread {true} towards '{predicted}', with their feature maps")
    return notes.channels_note(layer, true, predicted, ranked_channels(e.attributions[0], 3))


def inside_section(report: Report, classifier: Any, dataset: Any, ev: Any, group: dict) -> list[str]:
    """Feature maps of the group's most confident error next to a correct image of its true class, the channels
    of the last convolution that drive the error, the layer table, and a note on which class the error's final
    features resemble; returns the notes."""
    from ..inside import feature_maps, layer_summary
    from ..viz import feature_maps_figure

    t, p = group["true"], group["predicted"]
    s = report.section(
        "Inside the model",
        f"What the convolution layers respond to: the feature maps (one small image per filter, bright = strong "
        f"response) of the most confidently misread {t} (read as {p}) next to a {t} the model gets right. Early "
        "layers respond to strokes and edges, later layers to larger shapes. Then the channels of the last "
        f"convolution that carry the evidence for '{p}' (gradient x activation: how much each unit adds to that "
        "class's score), each with what it responds to.",
    )
    picks = {
        "misread": group["errors"][:1],
        "correct true": group["tp_true"][:1],
        "correct predicted": group["tp_predicted"][:1],
    }
    images = {k: [dataset[int(ev.positions[r])][0] for r in v] for k, v in picks.items() if v}
    layers = _conv_layers(classifier.module)
    maps = {k: feature_maps(classifier, v, layers) for k, v in images.items()}
    for layer in layers:
        s.figure(feature_maps_figure(maps["misread"][layer][0], max_maps=16), f"{layer}: the {t} read as {p}")
        if "correct true" in maps:
            s.figure(feature_maps_figure(maps["correct true"][layer][0], max_maps=16), f"{layer}: a correct {t}")
    said = [driving_channels(s, classifier, images["misread"][0], ev.classes.index(p), t, p)]
    if len(images) == 3:
        final = final_features(classifier, [im for v in images.values() for im in v])
        if final is not None:
            name, f = final
            said.append(notes.inside_note(name, t, p, _correlation(f[0], f[1]), _correlation(f[0], f[2])))
    summary = layer_summary(classifier)
    shown = [r for r in summary if r.params or r.output_shape is not None][:40]
    s.table(
        [
            {
                "layer": r.name,
                "type": r.type,
                "output shape": "-" if r.output_shape is None else str(list(r.output_shape)),
                "parameters": r.params,
            }
            for r in shown
        ],
        caption=f"Layers ({len(shown)} of {len(summary)} shown; {summary.total_params:,d} parameters in all)",
    )
    s.notes(said)
    return said
