"""Low precision (float16, bfloat16): the steps a CPU cannot do in it run in float32, tolerances scale with it."""

from __future__ import annotations

import torch

T = torch.Tensor
LOW = (torch.float16, torch.bfloat16)


def working(t: T) -> T:
    """``t`` in a precision every step supports: float32 for float16 and bfloat16, else unchanged."""
    return t.float() if t.dtype in LOW else t


def unit(dtype: torch.dtype) -> float:
    """The rounding unit (``finfo.eps``) of a low-precision dtype; 0 for float32 and float64, whose checks keep
    their own fixed tolerances."""
    return torch.finfo(dtype).eps if dtype in LOW else 0.0


def tolerance(dtype: torch.dtype, base: float) -> float:
    """A relative tolerance: ``base``, or eight rounding units of a low-precision dtype if that is more."""
    return max(base, 8 * unit(dtype))


def tiny_difference(dx: T, a: T, b: T, eps: float) -> T:
    """Where ``dx = a - b`` is too small for a secant slope ``(f(a) - f(b)) / dx``: below ``eps``, or (in low
    precision) within four rounding units of the operands, where ``f(a) - f(b)`` is mostly rounding error."""
    if a.dtype not in LOW:
        return dx.abs() < eps
    return working(dx).abs() < eps + 4 * unit(a.dtype) * torch.maximum(working(a).abs(), working(b).abs())
