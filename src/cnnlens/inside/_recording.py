"""Running a model once with forward hooks on named layers; hooks and training flags are restored afterwards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.core.hooks import capture as hooks
from cnnlens.core.model_guard import frozen, model_device
from cnnlens.models import Classifier, as_module, get_layer


def as_input(model: Classifier | nn.Module, x: Any) -> torch.Tensor:
    """A (B, C, H, W) tensor from a tensor (a (C, H, W) one gets a batch axis) or images (needs a Classifier)."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise CnnlensError(f"Expected a (B, C, H, W) or (C, H, W) tensor; got shape {tuple(x.shape)}.")
        return x
    if isinstance(model, Classifier):
        return model.preprocess(x)
    raise CnnlensError("Images need preprocessing: pass a Classifier (cnnlens.load_model) or a tensor.")


def capture(
    model: Classifier | nn.Module, x: torch.Tensor, layers: Sequence[str], keep: Callable[[Any], Any] = lambda o: o
) -> dict[str, Any]:
    """Outputs of ``layers`` (dotted names) for input ``x``, in eval mode without gradients.

    A layer that runs more than once per forward pass (a reused module) gives its last output, with a warning.
    """
    module = as_module(model)
    modules = [get_layer(module, name) for name in layers]
    with frozen(module), torch.no_grad(), hooks(modules, reused="last", names=list(layers)) as outs:
        module(x.to(model_device(module) or "cpu"))
    return {name: keep(out) for name, out in zip(layers, outs, strict=True)}
