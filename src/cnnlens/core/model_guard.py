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
    in train mode is explained as it predicts, and its statistics stay untouched. Only what differs is changed
    and put back (a model already in eval mode with frozen parameters costs one walk over its modules).
    """
    modules = list(model.modules())
    training = [m for m in modules if m.training]
    params = list({id(p): p for m in modules for p in m._parameters.values() if p is not None}.values())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        if training:
            model.eval()  # a module's own train() override runs, as in model.eval()
        for p, flag in zip(params, flags, strict=True):
            if flag:
                p.requires_grad_(False)
        yield model
    finally:
        for m in modules:
            if m.training:
                m.training = False
        for m in training:
            m.training = True
        for p, flag, g in zip(params, flags, grads, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
            if p.grad is not g:
                p.grad = g


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a model without any)."""
    for t in model.parameters():
        return t.device
    for b in model.buffers():
        return b.device
    return None


def is_scripted(model: nn.Module) -> bool:
    """True when TorchScript code runs inside ``model``: no forward hook or backward rule can reach into it."""
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())
