"""The ``layer=`` option of CAM, layer and neuron methods, and finding the layer(s) it names in the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from torch import nn

from ..core.errors import CnnlensError, say
from ..core.model_guard import is_scripted
from ..core.options import value
from ..engine import Context
from ..models import get_layer, probed_last_conv

LayerSpec: TypeAlias = str | nn.Module | Sequence[str | nn.Module] | None
"""A layer by dotted name or module, a list of them, or ``None`` (the default layer)."""

LAYERS = value(
    None,
    "the layer(s) whose activations are weighted (None: the last convolution with spatial output)",
    "a dotted layer name, a module, a list of them, or None",
    lambda v: v is None or isinstance(v, (str, nn.Module)) or (isinstance(v, (list, tuple)) and len(v) > 0),
)
LAYER = value(
    None,
    "the layer attributed to (None: the last convolution with spatial output)",
    "a dotted layer name, a module, or None",
    lambda v: v is None or isinstance(v, (str, nn.Module)),
)


def default_layer(ctx: Context) -> str:
    """The last convolution with spatial output, found by one probe pass (counted) on zeros shaped like one input;
    the probe runs once per model state and input shape (``cnnlens.models._layers.probed_last_conv``)."""
    if is_scripted(ctx.model) and not any(isinstance(m, nn.Conv2d) for m in ctx.model.modules()):
        raise CnnlensError(
            "this method captures a layer's activations with a forward hook, which TorchScript code does not take; "
            "explain the model as an nn.Module (load its state dict into its class), or use a method without hooks "
            "(saliency, integrated_gradients, occlusion)"
        )
    try:
        name, probed = probed_last_conv(ctx.model, (1, *ctx.inputs.shape[1:]))
        ctx.count(int(probed))
        return name
    except CnnlensError as err:
        cause = err.__cause__
        why = f"the model failed ({type(cause).__name__}: {cause})" if cause is not None else "found no nn.Conv2d"
        give = say(
            "layer='name' (see cnnlens.models.layer_names(model))", "--set layer=NAME (cnnlens inside lists them)"
        )
        raise CnnlensError(
            f"without a layer, this method looks for the last convolution with a spatial output by running the model "
            f"once on zeros shaped like one input, and {why}. Give the layer: {give}"
        ) from err


def resolve_layers(ctx: Context, spec: LayerSpec) -> tuple[list[str], list[nn.Module]]:
    """Names and modules of the requested layers; default: the last convolution with spatial output."""
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
    """Name and module of one layer (default: the last convolution with spatial output)."""
    if isinstance(spec, (list, tuple)):
        raise CnnlensError(f"give one layer (a dotted name or a module), not a list; got {spec!r}")
    names, modules = resolve_layers(ctx, spec)
    return names[0], modules[0]
