"""``SelectOutput``: a model that returns more than its logits (a dict, a tuple, an output object), seen as one
that returns the logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError


class SelectOutput(nn.Module):
    """``SelectOutput(model, key)(x)`` is ``model(x)[key]`` (a dict key such as ``"logits"`` or a tuple index), or
    ``model(x).key`` for output objects with that attribute.

    The wrapped model is a submodule (``self.model``), so every cnnlens guard reaches it; its layers are named
    ``model.<name>`` (e.g. ``layer="model.features.3"``). Raises ``CnnlensError`` when the key is not there.
    """

    def __init__(self, model: nn.Module, key: str | int) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise CnnlensError(f"SelectOutput wraps an nn.Module; got {type(model).__name__}")
        self.model = model
        self.key = key

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        if isinstance(self.key, str) and not isinstance(out, dict) and hasattr(out, self.key):
            return getattr(out, self.key)
        try:
            return out[self.key]
        except (KeyError, IndexError, TypeError) as err:
            raise CnnlensError(
                f"the model's output ({type(out).__name__}) has no entry {self.key!r}; {describe(out)}"
            ) from err


def describe(out: Any) -> str:
    """What a model's output holds, and which ``SelectOutput`` key gives the logits (a 2-D tensor)."""
    if isinstance(out, dict):
        keys = list(out)
        two_d = [k for k in keys if isinstance(out[k], torch.Tensor) and out[k].dim() == 2]
        key = "logits" if "logits" in keys else (two_d[0] if two_d else keys[0] if keys else "logits")
        return f"its keys are {keys}; e.g. SelectOutput(model, {key!r})"
    if isinstance(out, (tuple, list)):
        two_d = [i for i, v in enumerate(out) if isinstance(v, torch.Tensor) and v.dim() == 2]
        return f"it has {len(out)} entries; e.g. SelectOutput(model, {two_d[0] if two_d else 0})"
    if hasattr(out, "logits"):
        return "it has .logits; e.g. SelectOutput(model, 'logits')"
    return "wrap it in an nn.Module whose forward returns the (batch, classes) logits"
