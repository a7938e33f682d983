"""A convolution or fully connected layer as the LRP rules see it: its parameters and its two linear maps.

One call of ``F.conv1d/2d/3d`` or ``F.linear`` becomes a ``Layer``: the weight and bias it ran with, its stride,
dilation and groups, and every zero padding around it (its own ``padding``, ``padding="same"``, and a
``F.pad`` with zeros right before it, as TensorFlow-style "same" convolutions do). Padding belongs to the layer:
padded zeros are not inputs, so rules that spread relevance over all inputs (flat, w², z^B) leave them out.
A BatchNorm that follows the layer is folded into a new ``Layer`` for this call only; the model is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

T = torch.Tensor
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class LinearCall:
    """One linear layer call: ``z = W x + b`` as a convolution (``dims`` spatial dimensions) or a dense map."""

    name: str
    """Where it ran: the module that owns the weight, else the operation and its rank in the forward pass."""
    weight: T
    bias: T | None
    dims: int = 0  # 0: fully connected; 1-3: convolution
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    pad: tuple[tuple[int, int], ...] = ()  # zeros (before, after) per spatial dimension
    folded: str | None = None
    """The BatchNorm folded into this layer, if any."""

    @property
    def kind(self) -> str:
        return "conv" if self.dims else "linear"

    def forward(self, x: T, weight: T, bias: T | None = None) -> T:
        """The layer's map with other parameters (the rules' modified weights)."""
        if not self.dims:
            return F.linear(x, weight, bias)
        conv = _CONV[self.dims]
        if all(a == b for a, b in self.pad):
            return conv(x, weight, bias, self.stride, [a for a, _ in self.pad], self.dilation, self.groups)
        return conv(F.pad(x, self._flat_pad()), weight, bias, self.stride, 0, self.dilation, self.groups)

    def transpose(self, g: T, x: T, weight: T) -> T:
        """``J^T g``: the vector-Jacobian product of ``x -> forward(x, weight)`` (no forward pass needed)."""
        if not self.dims:
            return g @ weight
        symmetric = all(a == b for a, b in self.pad)
        shape = list(x.shape)
        if not symmetric:
            shape[2:] = [n + a + b for n, (a, b) in zip(shape[2:], self.pad, strict=True)]
        padding = [a for a, _ in self.pad] if symmetric else [0] * self.dims
        dummy = g.new_empty(1).expand(shape)
        out = torch.ops.aten.convolution_backward(
            g, dummy, weight, None, list(self.stride), padding, list(self.dilation), False,
            [0] * self.dims, self.groups, (True, False, False),
        )[0]  # fmt: skip
        if symmetric:
            return out
        crop = [slice(None), slice(None)] + [slice(a, a + n) for (a, _), n in zip(self.pad, x.shape[2:], strict=True)]
        return out[tuple(crop)]

    def _flat_pad(self) -> list[int]:
        flat: list[int] = []
        for a, b in reversed(self.pad):
            flat += [a, b]
        return flat

    def fold(self, name: str, mean: T, var: T, weight: T | None, bias: T | None, eps: float) -> LinearCall:
        """This layer followed by a BatchNorm in eval mode, as one layer (new tensors; nothing is modified)."""
        scale = torch.rsqrt(var + eps)
        if weight is not None:
            scale = scale * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        w = self.weight * scale.view(-1, *[1] * (self.weight.dim() - 1))
        b = shift if self.bias is None else self.bias * scale + shift
        return replace(self, weight=w, bias=b, folded=name)


def conv_layer(name: str, x: T, weight: T, bias: T | None, call: dict, extra: tuple[int, ...] | None) -> LinearCall:
    """The ``Layer`` of a ``F.convNd`` call (``call``: its stride, padding, dilation and groups) whose input was
    zero-padded by ``extra`` (a ``F.pad`` list, last dimension first) right before, if not ``None``."""
    dims = weight.dim() - 2

    def tup(v: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
        return tuple(int(i) for i in v) if isinstance(v, (tuple, list)) else (int(v),) * dims

    stride, dilation = tup(call.get("stride", 1)), tup(call.get("dilation", 1))
    padding = call.get("padding", 0)
    kernel = weight.shape[2:]
    if padding == "valid":
        pad = [(0, 0)] * dims
    elif padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        pad = [(t // 2, t - t // 2) for t in total]
    else:
        pad = [(p, p) for p in tup(padding)]
    if extra is not None:
        before = list(reversed(extra[0::2]))
        after = list(reversed(extra[1::2]))
        pad = [(a + before[i], b + after[i]) for i, (a, b) in enumerate(pad)]
    return LinearCall(name, weight, bias, dims, stride, dilation, int(call.get("groups", 1)), tuple(pad))
