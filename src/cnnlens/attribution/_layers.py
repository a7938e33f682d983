"""The ``layer=`` option of CAM, layer and neuron methods, and finding the layer(s) it names in the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import nn

from ..core.errors import CnnlensError, say
from ..core.model_guard import is_scripted
from ..core.options import value
from ..engine import Context
from ..models import get_layer, probed_default_layer

T = torch.Tensor

LayerSpec: TypeAlias = str | nn.Module | Sequence[str | nn.Module] | None
"""A layer by dotted name or module, a list of them, or ``None`` (the default layer)."""

LAYERS = value(
    None,
    "the layer(s) whose activations are weighted (None: the last spatial layer every path to the score passes "
    "through, e.g. ResNet layer4)",
    "a dotted layer name, a module, a list of them, or None",
    lambda v: v is None or isinstance(v, (str, nn.Module)) or (isinstance(v, (list, tuple)) and len(v) > 0),
)
LAYER = value(
    None,
    "the layer attributed to (None: the last spatial layer every path to the score passes through, e.g. ResNet layer4)",
    "a dotted layer name, a module, or None",
    lambda v: v is None or isinstance(v, (str, nn.Module)),
)


def default_layer(ctx: Context) -> str:
    """The default layer: the last spatial layer every path from the input to the score passes through (rule:
    :func:`cnnlens.models.default_layer`), found by tracing the model and one probe pass (counted) on zeros shaped
    like one input; kept per model state and input shape. ``ctx.info["default_layer"]`` says which and why."""
    if is_scripted(ctx.model) and not any(isinstance(m, nn.Conv2d) for m in ctx.model.modules()):
        raise CnnlensError(
            "this method captures a layer's activations with a forward hook, which TorchScript code does not take; "
            "explain the model as an nn.Module (load its state dict into its class), or use a method without hooks "
            "(saliency, integrated_gradients, occlusion)"
        )
    give = say("layer='name' (see cnnlens.models.layer_names(model))", "--set layer=NAME (cnnlens inside lists them)")
    try:
        found, probed = probed_default_layer(ctx.model, (1, *ctx.inputs.shape[1:]))
    except CnnlensError as err:
        cause = err.__cause__
        if cause is not None:  # the model failed on the probe input
            why = f"the model failed ({type(cause).__name__}: {cause})"
            raise CnnlensError(
                f"without a layer, this method looks for its default layer by running the model once on zeros "
                f"shaped like one input, and {why}. Give the layer: {give}"
            ) from err
        raise CnnlensError(
            f"without a layer, this method needs a default layer, and {str(err).rstrip('.')}. Give the layer: {give}"
        ) from None
    ctx.count(int(probed))
    ctx.info["default_layer"] = {"layer": found.name, "why": found.why, "traced": found.traced}
    return found.name


def refuse_tokens(name: str, acts: T) -> None:
    """Refuse a token layer: an output ``(B, T, C)`` (a vision transformer's patches and class token), on which
    CAM and layer methods would weight nothing spatial."""
    if acts.dim() == 3:
        raise CnnlensError(
            f"layer {name!r} outputs tokens, shape {tuple(acts.shape)} (batch, tokens, channels), as a vision "
            f"transformer's layers do; CAM and layer methods need a (B, C, H, W) feature map, and methods for "
            f"transformer tokens are not supported yet. Explain the model with an input-space method (saliency, "
            f"integrated_gradients, occlusion, kernel_shap, rise), or choose a layer with a (B, C, H, W) output"
        )


def resolve_layers(ctx: Context, spec: LayerSpec) -> tuple[list[str], list[nn.Module]]:
    """Names and modules of the requested layers; default: :func:`default_layer`."""
    if spec is None:
        spec = [default_layer(ctx)]
    elif isinstance(spec, (str, nn.Module)):
        spec = [spec]
    elif not isinstance(spec, Sequence) or not spec:
        raise CnnlensError(f"layer must be a dotted layer name, a module, or a list of them; got {spec!r}")
    names = {id(m): n for n, m in ctx.model.named_modules()}
    modules = [get_layer(ctx.model, s) for s in spec]
    return [names.get(id(m), str(s)) for m, s in zip(modules, spec, strict=True)], modules


def resolve_layer(ctx: Context, spec: LayerSpec) -> tuple[str, nn.Module]:
    """Name and module of one layer (default: :func:`default_layer`)."""
    if isinstance(spec, (list, tuple)):
        raise CnnlensError(f"give one layer (a dotted name or a module), not a list; got {spec!r}")
    names, modules = resolve_layers(ctx, spec)
    return names[0], modules[0]
