"""Gradient-free CAMs that weight channels by forward passes: Score-CAM and Ablation-CAM.

Both need one model evaluation per channel and image; channels that are zero everywhere are not evaluated
(masking with them gives the same all-zero input; ablating them changes nothing). Ablation-CAM cuts the model
at the layer (``cnnlens.models.cut_at``): the layers before it run once per image, only the rest per channel.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ...engine import Context, Rows
from .._registry import register
from ._base import CamMethod, upsample_rescaled
from ._degenerate import DegenerateMapWarning

T = torch.Tensor


@register
class ScoreCam(CamMethod):
    name = "score_cam"
    invariances = frozenset({"shift", "batch"})
    summary = "Score-CAM: each channel, upsampled to a [0, 1] mask, weighted by the softmax of masked-input scores."
    uses_gradients = False

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        size = (ctx.inputs.shape[-2], ctx.inputs.shape[-1])
        maps = []
        for i in range(ctx.n):
            masks = upsample_rescaled(acts[i : i + 1], size)[0]  # (K, H, W)
            active = torch.nonzero(masks.flatten(1).amax(1) > 0)[:, 0]
            x = ctx.inputs[i]

            def masked(sl: slice, x: T = x, m: T = masks, a: T = active) -> T:
                return _masked(x, m, a, sl)

            rows = Rows(len(active) + 1, masked)
            s = ctx.scores(rows, torch.full((len(active) + 1,), i, device=x.device))
            scores = s[-1].repeat(acts.shape[1])  # channels that are zero everywhere: the all-zero input
            scores[active] = s[:-1]
            weights = torch.softmax(scores, 0)
            maps.append((weights[:, None, None] * acts[i]).sum(0, keepdim=True))
        _warn_negative(acts, torch.stack(maps))
        return torch.stack(maps)


def _warn_negative(acts: T, maps: T) -> None:
    """Score-CAM's weights are positive (a softmax): its map is negative everywhere, and empty after the ReLU, only
    when the layer's own outputs are mostly negative (a layer before its activation). Say so."""
    empty = [i for i in range(len(maps)) if bool((maps[i] <= 0).all()) and bool((acts[i] < 0).any())]
    if empty:
        warnings.warn(
            f"score_cam: the map of image(s) {empty[:5]} is empty: Score-CAM weights the channels with positive "
            "weights, and this layer's outputs are negative where they are large (a layer before its activation, "
            "e.g. a normalizer-free or pre-activation block's output), so the weighted sum is negative everywhere "
            "and its ReLU leaves nothing. Choose a layer after an activation (layer=...), or use grad_cam",
            DegenerateMapWarning,
            stacklevel=2,
        )


def _masked(x: T, masks: T, active: T, sl: slice) -> T:
    """Rows ``x * mask_k`` for the active channels, then one all-zero row (index len(active))."""
    idx = torch.arange(sl.start, sl.stop, device=x.device)
    m = torch.zeros(len(idx), *masks.shape[1:], dtype=x.dtype, device=x.device)
    real = idx < len(active)
    m[real] = masks[active[idx[real]]]
    return x[None] * m[:, None]


def _zeroed(acts: T, channels: T) -> T:
    """Rows of one image's layer output ``(K, h, w)``, channel ``channels[r]`` zeroed in row ``r``."""
    rows = acts.expand(len(channels), *acts.shape).clone()
    rows[torch.arange(len(channels), device=acts.device), channels] = 0
    return rows


@register
class AblationCam(CamMethod):
    name = "ablation_cam"
    invariances = frozenset({"batch"})
    summary = "Ablation-CAM: channel weight = relative drop of the target score when the channel is zeroed."
    uses_gradients = False

    # Desai & Ramaswamy 2020 ("Ablation-CAM", WACV) define w_k = (y - y_k) / y for a positive class score y.
    # Divided by y, the weight flips sign when y < 0 (the negated score of a one-logit model would get the same
    # map as the score itself). cnnlens divides by |y|: identical to the paper for y > 0, and for any sign the
    # weight keeps the sign of the drop y - y_k, so explaining -s negates every weight (before the ReLU). The
    # drop itself does not change when a constant is added to the score; |y| does, so a shifted score
    # rescales the map by the positive factor |y| / |y + C| (the same map after min-max rescaling). y = 0
    # divides by 1.
    def activations(self, ctx: Context, layers: list[nn.Module], inputs: bool) -> tuple[list[T], list[T | None]]:
        """The layer's output from the head of the cut model (the view ``layer_map`` uses)."""
        return [ctx.at_layer(layer).inputs for layer in layers], [None] * len(layers)

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        """One tail pass per active channel and image: the model is cut at the layer, its head ran once."""
        view = ctx.at_layer(layer)
        base = view.target_scores()
        maps = []
        for i in range(ctx.n):
            a = view.inputs[i]
            active = torch.nonzero(a.flatten(1).abs().amax(1) > 0)[:, 0]

            def zeroed(sl: slice, a: T = a, active: T = active) -> T:
                return _zeroed(a, active[sl])

            weights = torch.zeros(acts.shape[1], dtype=acts.dtype, device=acts.device)
            if len(active) == 0:  # every channel is zero: ablating changes nothing, the map is zero (warned)
                maps.append(torch.zeros_like(acts[i, :1]))
                continue
            rows = Rows(len(active), zeroed)
            dropped = view.scores(rows, torch.full((len(active),), i, device=a.device))
            y = base[i]
            weights[active] = (y - dropped) / torch.where(y != 0, y.abs(), torch.ones_like(y))
            maps.append((weights[:, None, None] * acts[i]).sum(0, keepdim=True))
        return torch.stack(maps)
