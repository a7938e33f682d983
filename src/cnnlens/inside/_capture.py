"""Running a model once with forward hooks on named layers; hooks and training flags are restored afterwards."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from cnnlens._errors import CnnlensError, CnnlensWarning
from cnnlens.models import Classifier, get_layer


def as_module(model: Classifier | nn.Module) -> nn.Module:
    if isinstance(model, Classifier):
        return model.module
    if isinstance(model, nn.Module):
        return model
    raise CnnlensError(f"Expected a Classifier or an nn.Module; got {type(model).__name__}.")


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


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode inside the block; each one's own flag restored after, also on errors."""
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


def capture(
    model: Classifier | nn.Module, x: torch.Tensor, layers: Sequence[str], keep: Callable[[Any], Any] = lambda o: o
) -> dict[str, Any]:
    """Outputs of ``layers`` (dotted names) for input ``x``, in eval mode without gradients.

    A layer that runs more than once per forward pass (a reused module) gives its last output, with a warning.
    """
    module = as_module(model)
    targets = {name: get_layer(module, name) for name in layers}
    outputs: dict[str, Any] = {}
    calls: dict[str, int] = dict.fromkeys(targets, 0)

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            calls[name] += 1
            # clone: a later in-place op (e.g. ReLU(inplace=True)) would otherwise overwrite what we keep
            outputs[name] = keep(output.detach().clone() if isinstance(output, torch.Tensor) else output)

        return hook

    handles = []
    try:
        handles = [layer.register_forward_hook(make_hook(name)) for name, layer in targets.items()]
        with eval_mode(module), torch.no_grad():
            module(x.to(_device(module)))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, c in calls.items() if c == 0]
    if missing:
        raise CnnlensError(f"Layer(s) {', '.join(missing)} did not run in the forward pass; pick layers that do.")
    reused = [f"{n} ({c} times)" for n, c in calls.items() if c > 1]
    if reused:
        warnings.warn(
            f"Layer(s) ran more than once; the last output is kept: {', '.join(reused)}.", CnnlensWarning, stacklevel=3
        )
    return outputs


def _device(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
