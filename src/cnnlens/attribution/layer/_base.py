"""The base of layer attribution: which layer, and attributions shaped like its output."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ...core.options import Option
from ...engine import Context
from .._base import Method
from .._layers import LAYER, refuse_tokens, resolve_layer

T = torch.Tensor


class LayerMethod(Method):
    """A method whose attributions belong to the units of one layer: shaped like its output ``(B, C, h, w)``.

    ``layer=`` names the layer (default: the last spatial layer every path to the score passes through). ``Explanation.layer`` and
    ``info["layer"]`` give its name; methods that compute the layer's output for the inputs keep it in
    ``info["activations"]`` (the feature maps that ``cnnlens.viz.layer_channels_figure`` shows).
    """

    category = "layer"
    output = "layer"
    params: ClassVar[dict[str, Option]] = {"layer": LAYER}

    def target_layer(self, ctx: Context) -> tuple[str, nn.Module]:
        """The layer's name and module; recorded in ``ctx.info["layer"]``."""
        name, module = resolve_layer(ctx, self.options["layer"])
        ctx.info["layer"] = name
        return name, module

    def layer_name(self, ctx: Context) -> str | None:
        return ctx.info.get("layer")

    def check_result(self, ctx: Context, attributions: T) -> None:
        """A token layer ``(B, T, C)`` (a vision transformer's) is refused: nothing spatial to attribute to."""
        refuse_tokens(str(ctx.info.get("layer")), attributions)
