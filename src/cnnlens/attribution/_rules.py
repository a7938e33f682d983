"""Modified backward passes (guided backprop, deconvnet, DeepLIFT rescale) for any way a model writes them.

A ``TorchFunctionMode`` sees every activation call during the forward pass: ``nn.ReLU`` modules (also reused
ones and in-place ones), ``F.relu``, ``x.relu_()``, ``x.clamp(min=0)``, ReLU6 (``F.hardtanh``), SiLU, GELU...
Each one is replaced by an autograd function that computes the same forward value and applies the method's
rule in the backward pass. Nothing is attached to the model, so nothing can be left behind.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .._errors import UnsupportedOperationError, say
from .._options import flag

T = torch.Tensor
GENERALIZE = flag(False, "apply the rule to activations that are not ReLU-like too (an extension of the method)")

# Activations whose derivative is a 0/1 gate: guided backprop and deconvnet are defined for them.
_GATES = {"relu", "relu6", "hardtanh", "clamp", "clamp_min", "clip"}
_SMOOTH = {
    "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish",
    "hardswish", "hardsigmoid", "softplus", "sigmoid", "tanh",
}  # fmt: skip
_INPLACE = {  # in-place call -> its out-of-place twin
    torch.relu_: torch.relu,
    torch.Tensor.relu_: torch.Tensor.relu,
    F.hardtanh_: F.hardtanh,
    F.leaky_relu_: F.leaky_relu,
    F.elu_: F.elu,
    torch.Tensor.sigmoid_: torch.Tensor.sigmoid,
    torch.Tensor.tanh_: torch.Tensor.tanh,
    torch.Tensor.clamp_: torch.Tensor.clamp,
    torch.Tensor.clamp_min_: torch.Tensor.clamp_min,
    torch.Tensor.clip_: torch.Tensor.clip,
}


def _name(func: Callable) -> str:
    return getattr(func, "__name__", "").rstrip("_")


def _elementwise_name(func: Callable) -> str | None:
    base = _INPLACE.get(func, func)
    name = _name(base)
    owners = (F, torch, torch.Tensor, torch._C._nn)
    if (name in _GATES or name in _SMOOTH) and any(getattr(o, name, None) is base for o in owners):
        return name
    return None


def _split(func: Callable, args: tuple, kwargs: dict) -> tuple[T, Callable[[T], T], bool]:
    """A call -> (its tensor input, a pure out-of-place function of that input, whether it was in place)."""
    base = _INPLACE.get(func)
    if base is not None:
        return args[0], lambda t: base(t, *args[1:], **kwargs), True
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is None or "inplace" not in sig.parameters:
        return args[0], lambda t: func(t, *args[1:], **kwargs), False
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    params = dict(bound.arguments)
    x = params.pop(next(iter(sig.parameters)))
    inplace = bool(params.pop("inplace"))
    return x, lambda t: func(t, **params), inplace


def _vjp(f: Callable[[T], T], x: T, gy: T) -> T:
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xd), xd, gy)
    return g


class _Activation(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: T, f: Callable[[T], T], mode: RuleMode, name: str) -> T:
        ctx.f, ctx.mode, ctx.name = f, mode, name
        ctx.save_for_backward(x)
        return f(x)

    @staticmethod
    def backward(ctx: Any, gy: T) -> tuple:
        (x,) = ctx.saved_tensors
        return ctx.mode.activation_grad(ctx.name, ctx.f, x, gy), None, None, None


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: T, kw: dict, mode: RuleMode) -> tuple[T, T]:
        y, idx = F.max_pool2d_with_indices(x, **kw)
        ctx.mode = mode
        ctx.save_for_backward(x, y, idx)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx: Any, gy: T, _gidx: T) -> tuple:
        x, y, idx = ctx.saved_tensors
        return ctx.mode.maxpool_grad(x, y, idx, gy), None, None


class RuleMode(TorchFunctionMode):
    """Base: reroutes activations (and max pooling when ``pool_rule``) through the rule of a subclass."""

    method = ""
    pool_rule = False

    def __init__(self, generalize: bool = False) -> None:
        super().__init__()
        self.generalize = generalize
        self.seen: set[str] = set()

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            name = _elementwise_name(func)
            if name is not None:
                self.check(name)
                self.seen.add(name)
                x, f, inplace = _split(func, args, kwargs)
                if not inplace:
                    return _Activation.apply(x, f, self, name)
                y = _Activation.apply(x.clone(), f, self, name)
                return x.copy_(y)
            if self.pool_rule and func in (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d):
                return self._maxpool(func, args, kwargs)
        return func(*args, **kwargs)

    def _maxpool(self, func: Callable, args: tuple, kwargs: dict):
        names = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
        kw = dict(zip(names, args[1:], strict=False), **kwargs)
        want_idx = kw.pop("return_indices", False) or func is F.max_pool2d_with_indices
        if kw.get("stride") in (None, []):
            kw["stride"] = kw["kernel_size"]
        self.seen.add("max_pool2d")
        y, idx = _MaxPool.apply(args[0], kw, self)
        return (y, idx) if want_idx else y

    def check(self, name: str) -> None:
        """Raise when the method has no rule for this activation (subclasses decide)."""

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        raise NotImplementedError

    def maxpool_grad(self, x: T, y: T, idx: T, gy: T) -> T:
        raise NotImplementedError


class _GatedMode(RuleMode):
    def check(self, name: str) -> None:
        if name not in _GATES and not self.generalize:
            raise UnsupportedOperationError(
                f"{self.method} is defined for ReLU-like activations (ReLU, ReLU6, hardtanh, clamp), but this "
                f"model uses {name}. Use a method without this assumption (saliency, integrated_gradients, "
                f"deeplift), or pass {say('generalize=True', '--set generalize=True')} to apply the rule to {name} anyway (positive gradients "
                f"only), knowing that this is an extension of the published method."
            )


class GuidedMode(_GatedMode):
    """Guided backprop: only positive gradients pass through an activation, times its local derivative."""

    method = "guided_backprop"

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        return _vjp(f, x, gy.clamp(min=0))


class DeconvMode(_GatedMode):
    """Deconvnet: an activation passes the positive part of the incoming gradient, ignoring its input."""

    method = "deconvnet"

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        return gy.clamp(min=0)


class RescaleMode(RuleMode):
    """DeepLIFT rescale rule on a batch ``cat([inputs, references])``: secant slopes instead of derivatives.

    Every elementwise activation gets the multiplier ``(f(x) - f(x0)) / (x - x0)`` (the derivative where
    ``|x - x0| < eps``); max pooling routes each window's difference to the arg-max positions of the input and
    the reference. Both halves get the input half's multipliers, so the input half's gradient is exact.
    """

    method = "deeplift"
    pool_rule = True
    eps = 1e-10

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        x_in, x_ref = x.chunk(2)
        g_in = gy.chunk(2)[0]
        dx = x_in - x_ref
        small = dx.abs() < self.eps
        with torch.no_grad():
            g = g_in * (f(x_in) - f(x_ref)) / torch.where(small, torch.ones_like(dx), dx)
        if small.any():  # no secant where input and reference agree: the derivative there
            g = torch.where(small, _vjp(f, x_in, g_in), g)
        return torch.cat([g, g])

    def maxpool_grad(self, x: T, y: T, idx: T, gy: T) -> T:
        x_in, x_ref = x.chunk(2)
        y_in, y_ref = y.chunk(2)
        i_in, i_ref = idx.chunk(2)
        g_in = gy.chunk(2)[0]
        top = torch.maximum(y_in, y_ref)
        flat = x_in.flatten(2)

        def unpool(v: T, i: T) -> T:
            return torch.zeros_like(flat).scatter_add_(2, i.flatten(2), v.flatten(2)).view_as(x_in)

        contrib = unpool(g_in * (top - y_ref), i_in) + unpool(g_in * (y_in - top), i_ref)
        dx = x_in - x_ref
        small = dx.abs() < self.eps
        g = torch.where(small, unpool(g_in, i_in), contrib / torch.where(small, torch.ones_like(dx), dx))
        return torch.cat([g, g])
