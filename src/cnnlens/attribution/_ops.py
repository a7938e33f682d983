"""What a torch call in a forward pass is, for the backward rules of ``_gradient_modes.py``.

A ``TorchFunctionMode`` sees every call of a forward pass: the functional calls of modules, tensor methods,
operators. A rule that changes the backward pass of some of them has to know what all the others are, or a ReLU
written another way (``torch.maximum(x, 0)``, ``x * (x > 0)``) silently keeps its plain gradient. ``op_name``
names a call; ``activation_name`` recognises activation functions; ``pointwise`` tells element-wise operations
(aten's ``pointwise`` tag) from the rest; the sets below sort the element-wise ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

T = torch.Tensor

GATES = frozenset({"relu", "relu6", "hardtanh", "clamp", "clamp_min", "clamp_max", "clip", "threshold"})
"""Activations whose derivative is a 0/1 gate (ReLU-like): guided backprop and deconvnet are defined for them."""
ACTIVATIONS = frozenset({
    "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu", "mish", "hardswish", "hardsigmoid",
    "softplus", "sigmoid", "tanh", "softsign", "log_sigmoid", "hardshrink", "softshrink", "tanhshrink",
})  # fmt: skip
"""The other activation functions (not gates): every rule applies to them; guided backprop only when told to."""
BINARY_GATES = frozenset({"maximum", "minimum", "fmax", "fmin", "max", "min"})
"""With one operand on the gradient path and a constant other: a gate (``torch.maximum(x, 0)`` is a ReLU)."""
MASK_GATES = frozenset({"mul", "where", "masked_fill"})
"""With a 0/1 mask computed from the activations: a gate (``x * (x > 0)``, ``torch.where(x > 0, x, 0)``)."""
LINEAR = frozenset({"add", "sub", "rsub", "neg", "positive", "clone", "where", "masked_fill", "nan_to_num", "copy"})
"""Element-wise operations that are linear in their operands (with a constant mask for where/masked_fill)."""
SCALING = frozenset({"mul", "div", "true_divide"})
"""Linear in the operand on the gradient path when the other is a constant (the numerator, for division)."""
NOT_DIFFERENTIABLE = frozenset({
    "eq", "ne", "gt", "ge", "lt", "le", "greater", "greater_equal", "less", "less_equal", "not_equal", "isfinite",
    "isinf", "isnan", "isposinf", "isneginf", "signbit", "sign", "sgn", "heaviside", "logical_and", "logical_or",
    "logical_not", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
})  # fmt: skip
"""Element-wise operations without a gradient: their results are masks computed from the activations."""

_DUNDERS = {
    "radd": "add", "iadd": "add", "isub": "sub", "rmul": "mul", "imul": "mul", "truediv": "div",
    "itruediv": "div", "idiv": "div", "rtruediv": "rdiv", "ipow": "pow", "rmatmul": "matmul", "and": "bitwise_and",
    "or": "bitwise_or", "xor": "bitwise_xor", "invert": "bitwise_not", "floordiv": "floor_divide",
    "rfloordiv": "floor_divide", "mod": "remainder", "rmod": "remainder", "pos": "positive",
}  # fmt: skip
_INPLACE_DUNDERS = frozenset({"iadd", "isub", "imul", "itruediv", "idiv", "ipow", "iand", "ior", "ixor"})
_INPLACE = {  # in-place call -> its out-of-place twin (where the name alone does not tell)
    torch.relu_: torch.relu,
    F.hardtanh_: F.hardtanh,
    F.leaky_relu_: F.leaky_relu,
    F.elu_: F.elu,
}


def op_name(func: Callable) -> str:
    """The operation a call performs: ``x * y`` and ``x.mul_(y)`` are ``"mul"``, ``F.threshold`` ``"threshold"``."""
    raw = getattr(func, "__name__", "")
    name = raw.strip("_")
    if raw.startswith("__") and raw.endswith("__"):
        return _DUNDERS.get(name, name)
    return name


def out_of_place(func: Callable) -> Callable | None:
    """The out-of-place twin of an in-place call (``Tensor.mul_`` -> ``Tensor.mul``), ``None`` if it is not one."""
    if func in _INPLACE:
        return _INPLACE[func]
    raw = getattr(func, "__name__", "")
    if raw.startswith("__") and raw.endswith("__"):
        name = raw.strip("_")
        return getattr(torch.Tensor, f"__{name[1:]}__", None) if name in _INPLACE_DUNDERS else None
    if raw.endswith("_") and not raw.startswith("_"):
        return getattr(torch.Tensor, raw[:-1], None) or getattr(torch, raw[:-1], None)
    return None


def activation_name(func: Callable) -> str | None:
    """The name of an activation function (``GATES`` or ``ACTIVATIONS``), wherever torch defines it."""
    try:
        return _activation_name(func)
    except TypeError:  # an unhashable callable
        return _activation_name.__wrapped__(func)


@functools.lru_cache(maxsize=4096)
def _activation_name(func: Callable) -> str | None:
    base = out_of_place(func) or func
    name = op_name(base)
    owners = (F, torch, torch.Tensor, torch._C._nn)
    if (name in GATES or name in ACTIVATIONS) and any(
        getattr(o, n, None) is base for o in owners for n in (name, f"_{name}")
    ):
        return name
    return None


@functools.cache
def pointwise(name: str) -> bool:
    """Whether the aten operation ``name`` works element by element (its ``pointwise`` tag)."""
    if name in ("rdiv", "rpow"):
        return True
    op = getattr(torch.ops.aten, name, None)
    if op is None:
        return False
    try:
        return any(torch.Tag.pointwise in getattr(op, o).tags for o in op.overloads())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=256)
def _signature(func: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def at(func: Callable, args: tuple, kwargs: dict, pos: int | str) -> tuple[T, Callable[[T], T], bool]:
    """A call as a function of one operand (positional index or keyword): ``(operand, pure function, in place)``.

    The function is out of place and leaves every other argument as it was given."""
    operand = args[pos] if isinstance(pos, int) else kwargs[pos]

    def with_operand(fn: Callable) -> Callable[[T], T]:
        if isinstance(pos, int):
            return lambda t: fn(*args[:pos], t, *args[pos + 1 :], **kwargs)
        return lambda t: fn(*args, **{**kwargs, pos: t})

    base = out_of_place(func)
    if base is not None:
        return operand, with_operand(base), True
    sig = _signature(func)
    if sig is None or "inplace" not in sig.parameters or pos != 0:
        return operand, with_operand(func), False
    bound = sig.bind(*args, **kwargs)  # F.relu(x, inplace=True) and friends: the flag becomes False
    bound.apply_defaults()
    params = dict(bound.arguments)
    inplace = bool(params.pop("inplace"))
    params.pop(next(iter(sig.parameters)))
    return operand, lambda t: func(t, **params), inplace


def operands(args: tuple, kwargs: dict) -> list[tuple[int | str, Any]]:
    """Top-level operands of a call with their positions (items of a list argument share its position)."""
    out: list[tuple[int | str, Any]] = []
    for key, value in [*enumerate(args), *kwargs.items()]:
        for v in value if isinstance(value, (list, tuple)) else (value,):
            out.append((key, v))
    return out
