"""The autograd functions relevance propagation reroutes calls through, and the tables of operations
:class:`~cnnlens.attribution.propagation._mode.RelevanceMode` dispatches on."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from ._layer import LinearCall
from .rules import Rule, stabilize

T = torch.Tensor
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_HALF = (torch.float16, torch.bfloat16)


class _LinearFn(torch.autograd.Function):
    """Forward: the layer call as the model made it. Backward: the rule's input relevance."""

    @staticmethod
    def forward(ctx: Any, x: T, layer: LinearCall, rule: Rule, run: Callable[[], T]) -> T:
        z = run()
        ctx.layer, ctx.rule = layer, rule
        # a copy: an in-place activation may overwrite the output before the backward pass
        ctx.save_for_backward(x, z.clone() if rule.uses_output(layer) else None)
        return z

    @staticmethod
    def backward(ctx: Any, r: T) -> tuple:
        x, z = ctx.saved_tensors
        layer = ctx.layer
        if x.dtype in _HALF:  # the rules' divisions in float32
            bias = None if layer.bias is None else layer.bias.float()
            layer = replace(layer, weight=layer.weight.float(), bias=bias)
            zf = None if z is None else z.float()
            return ctx.rule.relevance(layer, x.float(), zf, r.float()).to(x.dtype), None, None, None
        return ctx.rule.relevance(layer, x, z, r), None, None, None


class _ShareFn(torch.autograd.Function):
    """Forward: ``f(*xs)``, linear in the ``xs``. Backward: each ``x`` gets ``x * J^T (R / stab(y))``, its share of
    the output relevance in proportion to its contribution (``f_eff``: ``f`` without additive constants when
    biases are left out)."""

    @staticmethod
    def forward(ctx: Any, f: Callable, f_eff: Callable, eps: float, *xs: T) -> T:
        ctx.f_eff, ctx.eps = f_eff, eps
        ctx.save_for_backward(*xs)
        return f(*xs)

    @staticmethod
    def backward(ctx: Any, r: T) -> tuple:
        xs = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [x.detach().requires_grad_(True) for x in xs]
            y = ctx.f_eff(*leaves)
            s = (r / stabilize(y.detach(), ctx.eps)).detach()
            grads = torch.autograd.grad((y * s).sum(), leaves)  # J^T s
        return (None, None, None, *(x * g for x, g in zip(xs, grads, strict=True)))


class _GateFn(torch.autograd.Function):
    """Forward: ``x * g`` (``mul``, the factors in the call's order), a signal ``x`` times a gate ``g`` (a
    sigmoid's output). Backward: the gate held as a fixed weight, ``x`` gets ``x * J_x^T (R / stab(y))`` (all the
    relevance, up to the stabilizer), the gate nothing: the signal-take-all rule of Arras et al. 2017 for LSTM
    gates. (AttnLRP, Achtibat et al. 2024, splits a product of two signals in halves instead; a product without
    exactly one gate is refused here.)"""

    @staticmethod
    def forward(ctx: Any, mul: Callable[[T, T], T], gate_first: bool, eps: float, x: T, g: T) -> T:
        ctx.f = (lambda s, w: mul(w, s)) if gate_first else mul  # f(signal, gate) in the call's order
        ctx.eps = eps
        ctx.save_for_backward(x, g)
        return ctx.f(x, g)

    @staticmethod
    def backward(ctx: Any, r: T) -> tuple:
        x, g = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            y = ctx.f(leaf, g.detach())
            s = (r / stabilize(y.detach(), ctx.eps)).detach()
            (grad,) = torch.autograd.grad((y * s).sum(), leaf)
        return None, None, None, x * grad, torch.zeros_like(g)


class _PassFn(torch.autograd.Function):
    """Forward: ``f(x)`` (same shape). Backward: the relevance unchanged."""

    @staticmethod
    def forward(ctx: Any, x: T, f: Callable[[T], T]) -> T:
        return f(x)

    @staticmethod
    def backward(ctx: Any, r: T) -> tuple:
        return r, None


def layer_norm_map(x: T, shape: Any, weight: T | None, bias: T | None, eps: float) -> T:
    """``F.layer_norm`` with the standard deviation detached: ``(x - mean) / std * w + b``, linear in ``x`` for
    the relevance pass (the normalization's scale held constant; Ali et al. 2022, Achtibat et al. 2024)."""
    dims = tuple(range(-(1 if isinstance(shape, int) else len(shape)), 0))
    mean = x.mean(dims, keepdim=True)
    std = torch.sqrt(x.detach().var(dims, unbiased=False, keepdim=True) + eps)
    y = (x - mean) / std
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def group_norm_map(x: T, groups: int, weight: T | None, bias: T | None, eps: float) -> T:
    """``F.group_norm`` with the standard deviation of each group detached (see ``layer_norm_map``)."""
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mean = xg.mean(-1, keepdim=True)
    std = torch.sqrt(xg.detach().var(-1, unbiased=False, keepdim=True) + eps)
    y = ((xg - mean) / std).reshape(x.shape)
    per_channel = (1, c, *[1] * (x.dim() - 2))
    y = y if weight is None else y * weight.view(per_channel)
    return y if bias is None else y + bias.view(per_channel)


_NORM_ARGS = {
    F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
    F.group_norm: ("input", "num_groups", "weight", "bias", "eps"),
}


def norm_maps(func: Callable, call: dict[str, Any], zero_bias: bool) -> tuple[Callable[[T], T], Callable[[T], T]]:
    """``(f, f_eff)`` of a ``F.layer_norm`` / ``F.group_norm`` call (its arguments by name): the call itself, and
    the linear map with the standard deviation held constant (without the bias when ``zero_bias``)."""
    bias = None if zero_bias else call.get("bias")
    linear = layer_norm_map if func is F.layer_norm else group_norm_map
    size = call[_NORM_ARGS[func][1]]

    def f_eff(t: T) -> T:
        return linear(t, size, call.get("weight"), bias, call.get("eps", 1e-5))

    def f(t: T) -> T:
        return func(**{**call, "input": t})

    return f, f_eff


def _tensors(args: tuple, kwargs: dict | None = None) -> list[T]:
    """The relevance-carrying tensors among the arguments (also inside lists and tuples)."""
    out = []
    for a in itertools.chain(args, (kwargs or {}).values()):
        for t in a if isinstance(a, (list, tuple)) else (a,):
            if isinstance(t, T) and t.requires_grad:
                out.append(t)
    return out


def _carries(args: tuple, kwargs: dict) -> bool:
    """Whether any tensor among the arguments (or in a list of them) requires grad, i.e. carries relevance."""
    for a in itertools.chain(args, kwargs.values()):
        if isinstance(a, T):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)) and any(isinstance(t, T) and t.requires_grad for t in a):
            return True
    return False


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, Any]:
    """A call's arguments by name (positional ones named by ``names``)."""
    return {**dict(zip(names, args, strict=False)), **kwargs}


def _zero(v: object) -> T | int:
    return torch.zeros_like(v) if isinstance(v, T) else 0


def _interpolation_mode(args: tuple, kwargs: dict) -> str:
    return str(kwargs.get("mode", args[3] if len(args) > 3 else "nearest"))


def _op_name(func: Callable) -> str:
    qual = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
    module = getattr(func, "__module__", None) or ""
    if "boolean_dispatch" in qual or module in ("torch.nn.functional", "torch._C._nn"):
        return f"F.{getattr(func, '__name__', qual)}"
    return qual.replace("_VariableFunctionsClass", "torch").replace("TensorBase", "Tensor")


Tn = torch.Tensor
_IN_PLACE: dict[Callable, Callable] = {
    Tn.add_: Tn.add, Tn.__iadd__: Tn.add, Tn.sub_: Tn.sub, Tn.__isub__: Tn.sub,
    Tn.mul_: Tn.mul, Tn.__imul__: Tn.mul, Tn.div_: Tn.div, Tn.__itruediv__: Tn.div, Tn.neg_: Tn.neg,
}  # fmt: skip
_SUMS: set[Callable] = {torch.add, Tn.add, torch.sub, Tn.sub, torch.subtract, Tn.subtract, torch.rsub, Tn.__rsub__}
_PRODUCTS: set[Callable] = {torch.mul, Tn.mul, torch.multiply, Tn.multiply}
_GATES = frozenset({"sigmoid", "hardsigmoid"})
"""Activations whose output, multiplying another activation, is a gate (squeeze-and-excitation, SiLU as x * sigmoid(x))."""
_DIVISIONS: set[Callable] = {torch.div, Tn.div, torch.divide, Tn.divide, torch.true_divide, Tn.true_divide}
_LINEAR_MAPS: set[Callable] = _PRODUCTS | _DIVISIONS | {
    torch.neg, Tn.neg, torch.sum, Tn.sum, torch.mean, Tn.mean, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.interpolate,
}  # fmt: skip
_MAX_POOLS: set[Callable] = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices,
    F.max_pool3d_with_indices, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.adaptive_max_pool1d_with_indices,
    F.adaptive_max_pool2d_with_indices, F.adaptive_max_pool3d_with_indices,
}  # fmt: skip
_ROUTES: set[Callable] = _MAX_POOLS | {
    Tn.view, Tn.view_as, Tn.reshape, Tn.reshape_as, torch.reshape, Tn.flatten, torch.flatten, Tn.unflatten,
    torch.unflatten, Tn.permute, torch.permute, Tn.transpose, torch.transpose, Tn.t, Tn.squeeze, torch.squeeze,
    Tn.unsqueeze, torch.unsqueeze, Tn.contiguous, Tn.clone, torch.clone, Tn.expand, Tn.expand_as, Tn.repeat,
    Tn.__getitem__, Tn.narrow, torch.narrow, Tn.select, torch.select, Tn.split, torch.split, Tn.chunk,
    torch.chunk, Tn.unbind, torch.unbind, torch.cat, torch.concat, torch.concatenate, torch.stack, Tn.to,
    Tn.type, Tn.float, Tn.double, Tn.half, Tn.bfloat16, Tn.flip, torch.flip, Tn.roll, torch.roll, Tn.movedim,
    torch.movedim, F.pixel_shuffle, F.pixel_unshuffle, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout, Tn.requires_grad_, Tn.detach,
}  # fmt: skip
