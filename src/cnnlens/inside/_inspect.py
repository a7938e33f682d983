"""Layer summary, conv filter weights, feature maps and the most active channels of a layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.core.hooks import module_calls
from cnnlens.core.model_guard import frozen, model_device
from cnnlens.inside._recording import as_input, as_module, capture
from cnnlens.models import Classifier, get_layer


@dataclass(frozen=True)
class LayerInfo:
    """One submodule: dotted name, type, output shape on the summary's input (``None`` if it did not run),
    its own parameter count (not its children's) and how many of those are trainable."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    trainable: int
    depth: int


class LayerSummary(list):
    """A list of `LayerInfo`; ``str()`` gives a table, ``total_params`` the sum."""

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self)

    def __str__(self) -> str:
        lines = [f"{'layer':40s} {'type':18s} {'output shape':20s} {'params':>10s}"]
        for r in self:
            shape = "-" if r.output_shape is None else str(list(r.output_shape))
            lines.append(f"{'  ' * r.depth + r.name:40s} {r.type:18s} {shape:20s} {r.params:>10,d}")
        lines.append(f"total parameters: {self.total_params:,d}")
        return "\n".join(lines)


def layer_summary(model: Classifier | nn.Module, x: torch.Tensor | Any | None = None) -> LayerSummary:
    """Every submodule with its output shape for input ``x`` (default: one zero image of the classifier's size)."""
    module = as_module(model)
    if x is None:
        prep = model.preprocessing if isinstance(model, Classifier) else None
        if prep is None:
            raise CnnlensError("Pass an example input x (a (B, C, H, W) tensor); this model has no input size.")
        x = torch.zeros((1, 3, *prep.input_size))
    x = as_input(model, x)
    named = [(n, m) for n, m in module.named_modules() if n]
    with module_calls(named, keep=_shape) as calls, frozen(module), torch.no_grad():
        module(x.to(model_device(module) or "cpu"))
    shapes: dict[str, tuple[int, ...]] = {}  # the first tensor each module output
    for call in calls:
        if call.output is not None:
            shapes.setdefault(call.name, call.output)
    rows = LayerSummary()
    for name, m in named:
        own = list(m.parameters(recurse=False))
        rows.append(
            LayerInfo(
                name,
                type(m).__name__,
                shapes.get(name),
                sum(p.numel() for p in own),
                sum(p.numel() for p in own if p.requires_grad),
                name.count("."),
            )
        )
    return rows


def _shape(out: Any) -> tuple[int, ...] | None:
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


def conv_filters(model: Classifier | nn.Module, layer: str | nn.Module) -> torch.Tensor:
    """A copy of a convolution's weights, ``(out_channels, in_channels / groups, kh, kw)``."""
    conv = get_layer(as_module(model), layer)
    if not isinstance(conv, nn.Conv2d):
        raise CnnlensError(f"Layer {layer!r} is a {type(conv).__name__}, not an nn.Conv2d; pick a convolution.")
    return conv.weight.detach().clone().cpu()


def feature_maps(
    model: Classifier | nn.Module, x: torch.Tensor | Any, layers: str | Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{layer name: output tensor}`` of each named layer (nested names like ``"features.1.0"`` work) for ``x``.

    ``x`` is a (B, C, H, W) tensor or images (with a Classifier). The model runs once in eval mode without
    gradients; hooks are removed and training flags restored afterwards.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise CnnlensError("No layers given; pass one or more layer names (see cnnlens.models.layer_names).")
    out = capture(model, as_input(model, x), names)
    bad = [n for n in names if not isinstance(out[n], torch.Tensor)]
    if bad:
        raise CnnlensError(f"Layer(s) {', '.join(bad)} do not output a single tensor; pick layers that do.")
    return {n: out[n] for n in names}


def top_channels(
    model: Classifier | nn.Module, x: torch.Tensor | Any, layer: str, n: int = 8
) -> list[list[tuple[int, float]]]:
    """Per image, the ``n`` channels of ``layer`` with the highest mean activation: ``[(channel, mean), ...]``."""
    maps = feature_maps(model, x, layer)[layer]
    if maps.ndim < 2:
        raise CnnlensError(f"Layer {layer!r} outputs shape {tuple(maps.shape)}; it has no channels.")
    means = maps.flatten(2).mean(2) if maps.ndim > 2 else maps
    k = min(int(n), means.shape[1])
    values, idx = means.topk(k, dim=1)
    return [
        [(int(c), float(v)) for c, v in zip(ri, rv, strict=True)]
        for ri, rv in zip(idx.tolist(), values.tolist(), strict=True)
    ]
