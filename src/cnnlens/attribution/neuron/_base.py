"""The base of neuron attribution: which unit of which layer is explained instead of a class score."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.errors import CnnlensError
from ...core.options import Option
from ...engine import NEURON, Context, Neuron, Target
from .._base import Method
from .._layers import LAYER

T = torch.Tensor


class NeuronMethod(Method):
    """An input attribution method that explains the value of one unit of a layer instead of a class score.

    ``layer=`` (default: the last spatial layer every path to the logits passes through) and ``neuron=``: a
    channel (its spatial mean), a ``(channel, y, x)`` unit, or a callable ``layer_output -> one value per row``.
    Only the part of the model up to the layer runs. Every input method runs unchanged on this score (``Context.create(..., neuron=...)``).
    """

    category = "neuron"
    explains_class = False
    params: ClassVar[dict[str, Option]] = {"layer": LAYER, "neuron": NEURON}

    def check_options(self) -> None:
        if self.options["neuron"] is None:
            raise CnnlensError(
                f"{self.name} needs neuron=: a channel index, a (channel, y, x) unit, or a callable "
                f"layer_output -> one value per row"
            )

    def explained(self, target: Target) -> Neuron | None:
        if self.explains_class:
            return None
        if target is not None:
            raise CnnlensError(
                f"{self.name} explains a neuron, not a class: remove target= (neuron_conductance follows a class "
                f"score through the neuron)"
            )
        return Neuron(self.options["layer"], self.options["neuron"])

    def layer_name(self, ctx: Context) -> str | None:
        if ctx.neuron is None:
            return ctx.info.get("layer")
        layer = ctx.neuron.layer
        if isinstance(layer, str):
            return layer
        return next((n for n, m in ctx.model.named_modules() if m is layer), type(layer).__name__)
