"""The report's "Inside the model" section: what the first layer looks for, the most active channels of a few
layers for the misread image next to correct images (one figure per layer, same scale per channel), the layer
table, and which class the error's final features resemble."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import capture
from ..core.model_guard import frozen
from . import _notes as notes
from ._failures import ErrorGroup
from ._html import Report, Section

CHANNELS = 8  # channels shown per layer


def _conv_layers(module: nn.Module) -> list[str]:
    from ..inside import spread_layers

    return spread_layers([n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)], 3)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two feature vectors."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float(a @ b) / denominator if denominator > 0 else 0.0


@dataclass(frozen=True)
class FinalFeatures:
    """The input of the model's last Linear ``layer`` for some images (``features``: one row per image)."""

    layer: str
    features: torch.Tensor


def final_features(classifier: Any, images: list[Any]) -> FinalFeatures | None:
    """The input of the model's last Linear layer for ``images``: the features its decision is made from.
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
    return FinalFeatures(layer=name, features=seen[0].detach().flatten(1).cpu())


def driving_channels(s: Section, classifier: Any, image: Any, *, target: int, true: str, predicted: str) -> str:
    """The channels of the last convolution that carry the evidence for the wrong class (``predicted``, class
    index ``target``) in an image of ``true`` (layer gradient x activation), with their feature maps; returns the
    note."""
    from ..attribution import explain
    from ..models import last_conv_layer
    from ..viz import layer_channels_figure, ranked_channels

    layer = last_conv_layer(classifier)
    x = classifier.preprocess([image])
    e = explain(classifier, x, "layer_gradient_x_activation", layer=layer, target=target)
    pixels = classifier.preprocessing.to_pixels(x)[0]
    fig = layer_channels_figure(
        e.attributions[0], e.info["activations"][0], pixels, top=6, title=f"{layer}: evidence for '{predicted}'"
    )
    s.figure(fig, f"Channels of {layer} that push the misread {true} towards '{predicted}', with their feature maps")
    return notes.channels_note(layer, true, predicted, ranked_channels(e.attributions[0], 3))


def _picks(ev: Any, group: ErrorGroup | None) -> dict[str, tuple[int, ...]]:
    """Row label -> evaluation rows: the group's first error and a correct image of each of its classes; without
    a group (no mistakes), the most confident correct image."""
    if group is None:
        right = np.flatnonzero(ev.y_true == ev.y_pred)
        best = int(right[np.argmax(ev.probabilities[right, ev.y_pred[right]])])
        return {f"correct {ev.classes[ev.y_true[best]]}": (best,)}
    t, p = group.true_label, group.predicted_label
    picks = {f"{t} read as {p}": group.errors[:1], f"correct {t}": group.correct_true[:1]}
    picks[f"correct {p}"] = group.correct_predicted[:1]
    return {k: v for k, v in picks.items() if v}


def inside_section(report: Report, classifier: Any, dataset: Any, ev: Any, group: ErrorGroup | None) -> list[str]:
    """The section for the group's most confident error (or, without mistakes, a correct image); returns its
    notes."""
    from ..inside import conv_filters, feature_maps
    from ..viz import channel_order, channels_figure, filters_figure

    picks = _picks(ev, group)
    first_label = next(iter(picks))
    s = report.section("Inside the model", _inside_intro(group))
    images = {k: dataset[int(ev.positions[v[0]])][0] for k, v in picks.items()}
    layers = _conv_layers(classifier.module)
    if layers:
        s.figure(filters_figure(conv_filters(classifier, layers[0]), title=f"{layers[0]}: the first layer's filters"),
                 f"{layers[0]}: what the first layer looks for")  # fmt: skip
    x = classifier.preprocess(list(images.values()))
    maps = feature_maps(classifier, x, layers)
    for layer in layers:
        per_image = {label: maps[layer][i] for i, label in enumerate(images)}
        chosen = channel_order(per_image[first_label].cpu().numpy(), "activation")[:CHANNELS]
        title = f"{layer}: the {len(chosen)} channels most active on {first_label}"
        s.figure(channels_figure(per_image, chosen, title), f"{layer}: {', '.join(images)}")
    said = []
    if group is not None:  # the channels of the last convolution that drive the error (layer attribution)
        t, p = group.true_label, group.predicted_label
        target = ev.classes.index(p)
        said.append(driving_channels(s, classifier, images[first_label], target=target, true=t, predicted=p))
    if group is not None and len(images) == 3:
        final = final_features(classifier, list(images.values()))
        if final is not None:
            f = final.features
            like_true, like_predicted = _correlation(f[0], f[1]), _correlation(f[0], f[2])
            said.append(
                notes.inside_note(final.layer, group.true_label, group.predicted_label, like_true, like_predicted)
            )
    _layer_table(s, classifier)
    s.notes(said)
    return said


def _inside_intro(group: ErrorGroup | None) -> str:
    what = "the misread image" if group is not None else "a correct image"
    return (
        f"What the convolution layers respond to. The first layer's filters show the small colour and edge "
        f"patterns it looks for. Then, for a few layers from the first to the last, the {CHANNELS} channels that "
        f"respond most to {what}, shown for each image side by side on the same scale (bright = strong "
        "response): where the rows differ, the model sees the images differently. Early layers respond to strokes "
        "and edges, later layers to larger shapes."
        + (
            f" Then the channels of the last convolution that carry the evidence for '{group.predicted_label}' "
            "(gradient x activation: how much each unit adds to that class's score), each with what it responds to."
            if group is not None
            else ""
        )
    )


def _layer_table(s: Section, classifier: Any) -> None:
    """The model's layers (up to 40 with parameters or an output shape)."""
    from ..inside import layer_summary

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
