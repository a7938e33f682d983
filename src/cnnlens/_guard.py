"""Leave the caller's model exactly as it was: flags, requires_grad, parameters, buffers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Inside: eval mode, no parameter gradients. Afterwards (also on error): every flag as before.

    Eval mode means BatchNorm uses its running statistics and never updates them, so a model the caller left
    in train mode is explained as it predicts, and its statistics stay untouched.
    """
    training = [(m, m.training) for m in model.modules()]
    requires = [(p, p.requires_grad) for p in model.parameters()]
    grads = [(p, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in requires:
            p.requires_grad_(False)
        yield model
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires:
            p.requires_grad_(flag)
        for p, g in grads:
            p.grad = g


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a model without any)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def is_scripted(model: nn.Module) -> bool:
    """True when TorchScript code runs inside ``model``: no forward hook or backward rule can reach into it."""
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())
