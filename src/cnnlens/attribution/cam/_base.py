"""The CAM pipeline: find the layer(s), capture activations (and gradients), weight channels, upsample.

A CAM method writes one step, ``layer_map(ctx, acts, grads) -> (B, 1, h, w)``, on one layer's activations
``acts`` and the gradients of the target scores w.r.t. them ``grads`` (``None`` for gradient-free methods).
The pipeline applies ReLU where the method's paper does (option ``relu``), keeps the raw layer-resolution
maps in ``Explanation.info["layer_maps"]`` and returns the map bilinearly upsampled to the input size. With
several layers, each upsampled map is rescaled to [0, 1] per image and the maps are averaged.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import CnnlensError
from ...core.options import Option
from ...engine import Context
from .._base import Method
from .._layers import LAYERS, refuse_tokens, resolve_layers
from ._degenerate import warn_degenerate

T = torch.Tensor


def check_spatial(name: str, acts: T) -> None:
    refuse_tokens(name, acts)
    if acts.dim() != 4 or acts.shape[-1] * acts.shape[-2] < 2:
        raise CnnlensError(
            f"layer {name!r} outputs shape {tuple(acts.shape)}; a CAM needs a (B, C, H, W) feature map with "
            f"H x W > 1 — choose a convolutional layer before global pooling"
        )


def upsample(maps: T, size: tuple[int, int]) -> T:
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def rescale(maps: T) -> T:
    """Min-max rescale each map (per image and channel) to [0, 1]; constant maps become 0."""
    lo = maps.flatten(2).amin(2)[..., None, None]
    hi = maps.flatten(2).amax(2)[..., None, None]
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


def upsample_rescaled(maps: T, size: tuple[int, int]) -> T:
    """``rescale(upsample(maps))``, with maps that are constant at layer resolution set to 0.

    Upsampling a constant map gives it rounding noise (about 1 ulp), which the min-max rescale would stretch
    to [0, 1]; constancy is therefore decided before upsampling (e.g. FullGrad's last layer before global
    average pooling, whose gradient is the same at every position).
    """
    flat = maps.flatten(2)
    constant = (flat.amax(2) == flat.amin(2))[..., None, None]
    return torch.where(constant, 0.0, rescale(upsample(maps, size)))


class CamMethod(Method):
    category = "cam"
    output = "map"
    params: ClassVar[dict[str, Option]] = {"layer": LAYERS}
    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True  # the paper's final ReLU

    def target_layers(self, ctx: Context) -> tuple[list[str], list[nn.Module], bool]:
        """(names, modules, whether to capture their inputs instead of their outputs)."""
        return (*resolve_layers(ctx, self.options["layer"]), False)

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        names, layers, inputs = self.target_layers(ctx)
        acts, grads = self.activations(ctx, layers, inputs)
        maps = []
        for name, layer, a, g in zip(names, layers, acts, grads, strict=True):
            check_spatial(name, a)
            m = self.layer_map(ctx, a, g, layer)
            warn_degenerate(self.name, name, a, g, m)
            maps.append(F.relu(m) if self.relu else m)
        ctx.info["layers"] = names
        ctx.info["layer_maps"] = maps
        size = (ctx.inputs.shape[-2], ctx.inputs.shape[-1])
        if len(maps) == 1:
            return upsample(maps[0], size), None
        return torch.stack([upsample_rescaled(m, size) for m in maps]).mean(0), None

    def activations(self, ctx: Context, layers: list[nn.Module], inputs: bool) -> tuple[list[T], list[T | None]]:
        """Each layer's output (or input) for the images, and with ``uses_gradients`` its gradient."""
        if self.uses_gradients:
            b = ctx.backward(ctx.inputs, ctx.owners(), layers=layers, input_grad=False)
            return b.outputs, list(b.layer_grads)
        return ctx.layer_outputs(layers, inputs), [None] * len(layers)

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        raise NotImplementedError
