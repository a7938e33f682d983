"""What a neuron method explains: one unit of a layer instead of a class score."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.errors import CnnlensError
from ..core.options import value

T = torch.Tensor
NeuronSpec = int | tuple | list | Callable[[T], T]


def one_per_row(fn: Callable[[T], Any], x: T, what: str, kind: str) -> T:
    """``fn(x)``, checked to be one ``kind`` per row of ``x``: a tensor of shape ``(N,)``; else a
    :class:`CnnlensError` saying ``what`` the callable must do and what it returned."""
    v = fn(x)
    if not isinstance(v, torch.Tensor) or v.shape != (x.shape[0],):
        raise CnnlensError(
            f"{what} of shape {tuple(x.shape)} to one {kind} per row, shape ({x.shape[0]},); it returned "
            f"{getattr(v, 'shape', type(v))}"
        )
    return v


def _is_index(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def valid_spec(v: Any) -> bool:
    """A channel index, a tuple of indices (one per axis after the batch) or a callable."""
    if callable(v) and not isinstance(v, nn.Module):
        return True
    if _is_index(v):
        return v >= 0
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_index(i) and i >= 0 for i in v)


NEURON = value(
    None,
    "the unit explained: a channel (its spatial mean), a (channel, y, x) unit, or a callable layer_output -> one "
    "value per row",
    "an int >= 0, a tuple of ints >= 0, or a callable",
    lambda v: v is None or valid_spec(v),
)


class Neuron:
    """The value of one unit of ``layer`` per row, read from the layer's output ``(B, C, ...)``.

    ``spec``: an int ``c`` is channel ``c``: its spatial mean for a feature map ``(B, C, H, W)``, its value for
    a vector ``(B, C)``; a tuple ``(c, y, x)`` (one index per axis after the batch) is that single unit; a
    callable maps the layer's output to one value per row.
    """

    def __init__(self, layer: str | nn.Module, spec: NeuronSpec) -> None:
        if spec is None:
            raise CnnlensError(
                "a neuron method needs neuron=: a channel index, a (channel, y, x) unit, or a callable "
                "layer_output -> one value per row"
            )
        if not valid_spec(spec):
            raise CnnlensError(f"neuron must be an int >= 0, a tuple of ints >= 0 or a callable; got {spec!r}")
        self.layer = layer
        self.spec: int | tuple[int, ...] | Callable[[T], T] = (
            tuple(int(i) for i in spec) if isinstance(spec, (tuple, list)) else spec
        )

    def describe(self) -> str:
        if callable(self.spec):
            return f"a function of {self.layer}"
        if isinstance(self.spec, tuple):
            return f"unit {self.spec} of {self.layer}"
        return f"channel {self.spec} of {self.layer}"

    def check(self, output: T) -> None:
        """Raise a clear error when the spec does not fit the layer's output."""
        if not isinstance(output, torch.Tensor):
            raise CnnlensError(f"layer {self.layer} outputs a {type(output).__name__}; a neuron needs a tensor")
        if callable(self.spec):
            return
        index = self.spec if isinstance(self.spec, tuple) else (self.spec,)
        shape = tuple(output.shape[1:])
        if len(index) > len(shape) or (len(index) > 1 and len(index) != len(shape)):
            raise CnnlensError(
                f"neuron {self.spec!r} does not fit layer {self.layer}, whose output per image has shape {shape}: "
                f"give a channel (int) or one index per axis, e.g. {tuple(s // 2 for s in shape)}"
            )
        for i, (k, n) in enumerate(zip(index, shape, strict=False)):
            if k >= n:
                raise CnnlensError(
                    f"neuron {self.spec!r}: index {k} on axis {i + 1} is out of range for layer {self.layer}, whose "
                    f"output per image has shape {shape}"
                )

    def __call__(self, output: T) -> T:
        """One value per row of ``output``."""
        self.check(output)
        if callable(self.spec):
            return one_per_row(self.spec, output, "a neuron callable must map the layer's output", "value")
        if isinstance(self.spec, tuple) and len(self.spec) == output.dim() - 1:
            unit: tuple[slice | int, ...] = (slice(None), *self.spec)
            return output[unit]
        channel = output[:, self.spec[0] if isinstance(self.spec, tuple) else self.spec]
        return channel.flatten(1).mean(1) if channel.dim() > 1 else channel

    def units(self, output: T) -> T:
        """1 on the neuron's units (the unit, or every unit of the channel), 0 elsewhere; shaped like ``output``."""
        if callable(self.spec):
            raise CnnlensError(
                "neuron conductance follows the class score through the neuron's units; it needs a channel or a "
                "(channel, y, x) unit, not a callable"
            )
        self.check(output)
        mask = torch.zeros_like(output)
        index = self.spec if isinstance(self.spec, tuple) else (self.spec,)
        units: tuple[slice | int, ...] = (slice(None), *index)
        mask[units] = 1
        return mask
