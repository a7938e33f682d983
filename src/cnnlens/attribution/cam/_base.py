"""The CAM pipeline: find the layer(s), capture activations (and gradients), weight channels, upsample.

A CAM method writes one step, ``layer_map(ctx, acts, grads) -> (B, 1, h, w)``, on one layer's activations
``acts`` and the gradients of the target scores w.r.t. them ``grads`` (``None`` for gradient-free methods).
The pipeline applies ReLU where the method's paper does (option ``relu``), keeps the raw layer-resolution
maps in ``Explanation.info["layer_maps"]`` and returns the map bilinearly upsampled to the input size. With
several layers, each upsampled map is rescaled to [0, 1] per image and the maps are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..._capture import capture
from ..._errors import CnnlensError, say
from ..._guard import is_scripted
from ..._options import Option, value
from ...models import get_layer, last_conv_layer
from .._base import Method
from .._context import Context

T = torch.Tensor
LAYER = value(
    None,
    "the layer(s) whose activations are weighted (None: the last convolution with spatial output)",
    "a dotted layer name, a module, a list of them, or None",
    lambda v: v is None or isinstance(v, (str, nn.Module)) or (isinstance(v, (list, tuple)) and len(v) > 0),
)


def resolve_layers(ctx: Context, spec: Any) -> tuple[list[str], list[nn.Module]]:
    """Names and modules of the requested layers; default: the last convolution with spatial output."""
    if spec is None:
        spec = [_default_layer(ctx)]
    elif isinstance(spec, (str, nn.Module)):
        spec = [spec]
    elif not isinstance(spec, Sequence) or not spec:
        raise CnnlensError(f"layer must be a dotted layer name, a module, or a list of them; got {spec!r}")
    names = {id(m): n for n, m in ctx.model.named_modules()}
    modules = [get_layer(ctx.model, s) for s in spec]
    return [names.get(id(m), str(s)) for m, s in zip(modules, spec, strict=True)], modules


def _default_layer(ctx: Context) -> str:
    """The last convolution with a spatial output, found by running the model once on zeros like one input."""
    if is_scripted(ctx.model) and not any(isinstance(m, nn.Conv2d) for m in ctx.model.modules()):
        raise CnnlensError(
            "a CAM captures a layer's activations with a forward hook, which TorchScript code does not take; explain "
            "the model as an nn.Module (load its state dict into its class), or use a method without hooks "
            "(saliency, integrated_gradients, occlusion)"
        )
    ctx.passes += 1  # the probe
    try:
        return last_conv_layer(ctx.model, input_shape=(1, *ctx.inputs.shape[1:]))
    except CnnlensError as err:
        cause = err.__cause__
        why = f"the model failed ({type(cause).__name__}: {cause})" if cause is not None else "found no nn.Conv2d"
        give = say(
            "layer='name' (see cnnlens.models.layer_names(model))", "--set layer=NAME (cnnlens inside lists them)"
        )
        raise CnnlensError(
            f"without a layer, a CAM looks for the last convolution with a spatial output by running the model once "
            f"on zeros shaped like one input, and {why}. Give the layer: {give}"
        ) from err


def check_spatial(name: str, acts: T) -> None:
    if acts.dim() != 4 or acts.shape[-1] * acts.shape[-2] < 2:
        raise CnnlensError(
            f"layer {name!r} outputs shape {tuple(acts.shape)}; a CAM needs a (B, C, H, W) feature map with "
            f"H x W > 1 — choose a convolutional layer before global pooling"
        )


def activations(ctx: Context, layers: list[nn.Module], inputs: bool = False) -> list[T]:
    """Outputs (or inputs) of ``layers`` for the model's inputs, no gradients; the same passes give the logits."""
    record = ctx._logits is None
    logits_parts = []

    def step(sl: slice) -> list[T]:
        with torch.no_grad(), capture(layers, inputs=inputs) as outs:
            logits = ctx.forward(ctx.inputs[sl])
        logits_parts.append(logits)
        return outs

    parts = ctx.run(step, ctx.n)
    if record:
        ctx._logits = torch.cat(logits_parts)
    return [torch.cat([p[i] for p in parts]) for i in range(len(layers))]


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
    params: ClassVar[dict[str, Option]] = {"layer": LAYER}
    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True  # the paper's final ReLU

    def target_layers(self, ctx: Context) -> tuple[list[str], list[nn.Module], bool]:
        """(names, modules, whether to capture their inputs instead of their outputs)."""
        return (*resolve_layers(ctx, self.options["layer"]), False)

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        names, layers, inputs = self.target_layers(ctx)
        if self.uses_gradients:
            record = ctx._logits is None
            _, _, acts, grads = ctx.backward(ctx.inputs, ctx.owners(), layers=layers, record=record, input_grad=False)
        else:
            acts, grads = activations(ctx, layers, inputs), [None] * len(layers)
        maps = []
        for name, layer, a, g in zip(names, layers, acts, grads, strict=True):
            check_spatial(name, a)
            m = self.layer_map(ctx, a, g, layer)
            maps.append(F.relu(m) if self.relu else m)
        ctx.info["layers"] = names
        ctx.info["layer_maps"] = maps
        size = tuple(ctx.inputs.shape[-2:])
        if len(maps) == 1:
            return upsample(maps[0], size), None
        return torch.stack([upsample_rescaled(m, size) for m in maps]).mean(0), None

    def layer_map(self, ctx: Context, acts: T, grads: T | None, layer: nn.Module) -> T:
        raise NotImplementedError
