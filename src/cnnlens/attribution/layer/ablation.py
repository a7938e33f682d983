"""Layer feature ablation: the score drop when a group of the layer's units is replaced by its baseline value."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...core.errors import CnnlensError
from ...core.options import value
from ...engine import Context, Rows
from .._baselines import single_baseline
from .._registry import register
from ._base import LayerMethod

if TYPE_CHECKING:
    from ...models import Preprocessing
    from .._baselines import BaselineSpec

T = torch.Tensor


def unit_groups(mask: T | None, shape: tuple[int, ...]) -> tuple[T, int]:
    """``(labels shaped like one image's layer output, number of groups)``: each channel by default, else the
    integer ``mask`` (labels ``0..S-1``, every label used) broadcast to ``shape``."""
    channels = shape[0]
    if mask is None:
        labels = torch.arange(channels).view(-1, *[1] * (len(shape) - 1)).expand(shape)
        return labels.contiguous(), channels
    m = torch.as_tensor(mask)
    if m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
        raise CnnlensError(f"mask must be an integer tensor of group labels; got dtype {m.dtype}")
    if m.dim() == len(shape) + 1 and m.shape[0] == 1:
        m = m[0]
    try:
        m = m.expand(shape)
    except RuntimeError:
        raise CnnlensError(
            f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit the layer's output per image {shape}; "
            f"give a tensor broadcastable to it, e.g. ({channels}, 1, 1) to group whole channels"
        ) from None
    m = m.long()
    if (m < 0).any():
        raise CnnlensError("mask labels must be >= 0 (group numbers 0..S-1)")
    used = torch.bincount(m.flatten())
    if (used == 0).any():
        raise CnnlensError(
            f"mask labels must be 0..S-1 with every label used; label {int((used == 0).nonzero()[0])} is not"
        )
    return m.contiguous(), len(used)


@register
class LayerFeatureAblation(LayerMethod):
    name = "layer_feature_ablation"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Score drop when a group of the layer's units (default: each channel) is set to its baseline value."
    params = {
        **LayerMethod.params,
        "mask": value(
            None,
            "groups of units ablated together (None: each channel)",
            "None or an integer tensor of labels 0..S-1 broadcastable to the layer's output per image",
        ),
    }

    def resolve_baseline(self, spec: BaselineSpec, inputs: T, preprocessing: Preprocessing | None) -> T | None:
        """``None``: ablated units become 0; an input-space baseline (a name, a number, a tensor): they take
        their value for that baseline image."""
        return None if spec is None else single_baseline(spec, inputs, preprocessing)

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """Each unit gets its group's ``f(x) - f(x with the group ablated)`` (Captum's ``LayerFeatureAblation``
        convention); ``info["group_values"]`` holds the ``(B, S)`` drops and ``info["groups"]`` the labels. The
        model is cut at the layer: the head runs once per image, the tail once per group and image."""
        _, layer = self.target_layer(ctx)
        view = ctx.at_layer(layer)
        a = view.inputs
        fill = torch.zeros_like(a) if baseline is None else view.project(baseline)[0]
        labels, s = unit_groups(self.options["mask"], tuple(a.shape[1:]))
        labels = labels.to(a.device)
        fx = view.target_scores()
        owner = view.owners(s)
        group = torch.arange(s, device=a.device).repeat(ctx.n)

        def build(sl: slice) -> T:
            o = owner[sl]
            hit = labels[None] == group[sl].view(-1, *[1] * labels.dim())
            return torch.where(hit, fill[o], a[o])

        drop = (fx[owner] - view.scores(Rows(len(owner), build), owner)).view(ctx.n, s)
        ctx.info.update(group_values=drop, groups=labels, activations=a)
        return drop[:, labels.flatten()].view(a.shape), None
