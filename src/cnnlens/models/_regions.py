"""How the primitive operations of a traced CNN move a changed region, and how they compute only part of it.

Used by :mod:`cnnlens.models._incremental`. A *region* is, per row, the rows ``[top, bottom)`` and columns
``[left, right)`` of a feature map where a value may differ from the clean image's (empty when
``bottom <= top``). Operations are sorted into rules:

* ``pointwise``: the value at a position depends on the input at that position only (activations, BatchNorm in
  eval mode, dropout in eval mode, clamps); the region does not move.
* ``binary``: elementwise arithmetic of feature maps of one size (residual additions); the union of the regions.
* ``cat``: concatenation along channels; the union of the regions.
* ``pad``: constant padding; the region shifts by the top and left padding.
* ``window``: convolutions (stride, padding, dilation, groups) and max / average pooling; an output position is
  changed when its receptive field meets the region. Computed on a tile of the input (the clean values with the
  changed patch laid over them, the padding written out) with no padding of its own.
* ``generic``: everything else (global pooling, flatten, linear, ...), run on the full tensors.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

T = torch.Tensor

POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.GELU,
    nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softplus, nn.Identity, nn.PReLU,
)  # fmt: skip
POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.hardtanh, F.silu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardswish,
    F.hardsigmoid, F.gelu, F.leaky_relu, F.elu, F.mish, F.softplus, torch.clamp, torch.clip, torch.exp, torch.abs,
    torch.neg, operator.neg, F.relu_, torch.relu_, torch.sigmoid_, torch.tanh_, torch.clamp_,
}  # fmt: skip
POINTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_min_",
    "clamp_max", "clamp_max_", "clip", "clip_", "contiguous", "exp", "abs", "neg", "float", "hardtanh_",
}  # fmt: skip
BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
          torch.add, torch.sub, torch.mul, torch.div}  # fmt: skip
BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}


@dataclass(frozen=True)
class Window:
    """A sliding-window operation: kernel, stride, top/left padding, dilation, and what computes a tile."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    fill: float  # the value of the padding (0, or -inf for max pooling)
    run: Any  # tile (N, C, h, w) -> output of that tile, with no padding
    macs_per_output: int  # multiply-adds per output value (0 for pooling)
    conv: tuple | None = None  # a convolution's (weight, bias, stride, padding as given, dilation, groups)

    def full(self, x: T, pad: tuple[int, int] | None = None) -> T:
        """A convolution run on whole maps, with its padding (``pad``: with this zero padding instead, of a
        padding node before it that was skipped)."""
        assert self.conv is not None
        weight, bias, stride, padding, dilation, groups = self.conv
        if pad is not None:
            return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
        if self.padding == (0, 0) and padding != "same":
            return self.run(x)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    def folded(self, scale: T, shift: T) -> Window:
        """This convolution followed by ``y * scale + shift`` per output channel (an eval-mode BatchNorm) as one."""
        assert self.conv is not None
        weight, bias, stride, padding, dilation, groups = self.conv
        w = (weight.detach().double() * scale.double().view(-1, 1, 1, 1)).to(weight.dtype)
        b = (shift.double() if bias is None else bias.detach().double() * scale.double() + shift.double()).to(
            weight.dtype
        )
        out = conv_window(w, b, stride, padding, dilation, groups)
        assert out is not None
        return out

    def outputs(self, region: T, size: tuple[int, int]) -> T:
        """The region of the output changed by ``region`` (``(N, 4)`` top, bottom, left, right) of the input."""
        out = region.clone()
        for axis, (a, b) in enumerate(((0, 1), (2, 3))):
            k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
            lo = torch.div(region[:, a] + p - d * (k - 1) + s - 1, s, rounding_mode="floor")  # ceil
            hi = torch.div(region[:, b] - 1 + p, s, rounding_mode="floor") + 1
            out[:, a], out[:, b] = lo.clamp(0, size[axis]), hi.clamp(0, size[axis])
        return out

    def tile(self, start: tuple[T, T], shape: tuple[int, int]) -> tuple[tuple[T, T], tuple[int, int]]:
        """Where the input tile of output box ``start`` (rows' top, left) of size ``shape`` lies, and its size."""
        (y, x), (h, w) = start, shape
        (sy, sx), (py, px), (dy, dx), (ky, kx) = self.stride, self.padding, self.dilation, self.kernel
        return (y * sy - py, x * sx - px), ((h - 1) * sy + dy * (ky - 1) + 1, (w - 1) * sx + dx * (kx - 1) + 1)


def _matmul(x: T, matrix: T, bias: T | None) -> T:
    """A 1 x 1 convolution of a channels-last map ``x`` (N, C, h, w) as one matrix product (``matrix``: (C, O));
    PyTorch's CPU convolution copies such maps to another layout first."""
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    y = rows @ matrix if bias is None else torch.addmm(bias, rows, matrix)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)


def in_place(node: fx.Node, module: nn.Module | None) -> Any:
    """An in-place version ``f(x) -> x`` of an activation node (for a value nothing else reads), else ``None``."""
    if node.kwargs or len(node.args) != 1:
        return None
    if isinstance(module, nn.ReLU6):
        return lambda v: F.hardtanh_(v, 0.0, 6.0)
    if isinstance(module, nn.Hardtanh):
        return lambda v: F.hardtanh_(v, module.min_val, module.max_val)
    if isinstance(module, nn.ReLU) or (node.op == "call_function" and node.target in (F.relu, torch.relu)):
        return torch.relu_
    if isinstance(module, nn.SiLU) or (node.op == "call_function" and node.target is F.silu):
        return lambda v: F.silu(v, inplace=True)
    if node.op == "call_function" and node.target is F.relu6:
        return lambda v: F.hardtanh_(v, 0.0, 6.0)
    return None


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int] | None:
    if padding == "valid":
        return (0, 0)
    if padding == "same":  # PyTorch pads the extra one at the bottom / right
        (kh, kw), (dh, dw) = kernel, dilation
        return (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
    return _pair(padding)


def conv_window(weight: T, bias: T | None, stride: Any, padding: Any, dilation: Any, groups: int) -> Window | None:
    kernel, stride, dilation = tuple(weight.shape[2:]), _pair(stride), _pair(dilation)
    if len(kernel) != 2:
        return None
    pad = _conv_padding(padding, kernel, dilation)
    if pad is None:
        return None

    matrix = weight.detach().reshape(weight.shape[0], -1).t() if kernel == (1, 1) and groups == 1 else None

    def run(tile: T) -> T:
        if matrix is not None and stride == (1, 1) and tile.is_contiguous(memory_format=torch.channels_last):
            return _matmul(tile, matrix, bias)
        return F.conv2d(tile, weight, bias, stride, 0, dilation, groups)

    macs = int(weight.shape[1] * kernel[0] * kernel[1])
    conv = (weight, bias, stride, padding, dilation, groups)
    return Window(kernel, stride, pad, dilation, 0.0, run, macs, conv)


def pool_window(kind: str, kernel: Any, stride: Any, padding: Any, dilation: Any, **extra: Any) -> Window | None:
    kernel = _pair(kernel)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
    padding, dilation = _pair(padding), _pair(dilation)
    if extra.get("ceil_mode") or extra.get("return_indices"):
        return None
    if kind == "max":

        def run(tile: T) -> T:
            return F.max_pool2d(tile, kernel, stride, 0, dilation)

        return Window(kernel, stride, padding, dilation, -torch.inf, run, 0)
    if padding != (0, 0) and not extra.get("count_include_pad", True):
        return None  # the divisor depends on the position: not a tile computation
    divisor = extra.get("divisor_override")

    def run_avg(tile: T) -> T:
        return F.avg_pool2d(tile, kernel, stride, 0, False, True, divisor)

    return Window(kernel, stride, padding, (1, 1), 0.0, run_avg, 0)


def window_of(node: fx.Node, module: nn.Module | None, const: Any) -> Window | None:
    """The :class:`Window` of a convolution or pooling node (``const(arg)`` gives a constant argument's value);
    ``None`` when the node is no such operation or one this module does not compute on tiles."""
    if module is not None:
        if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
            return conv_window(module.weight, module.bias, module.stride, module.padding, module.dilation,
                               module.groups)  # fmt: skip
        if isinstance(module, nn.MaxPool2d):
            return pool_window("max", module.kernel_size, module.stride, module.padding, module.dilation,
                               ceil_mode=module.ceil_mode, return_indices=module.return_indices)  # fmt: skip
        if isinstance(module, nn.AvgPool2d):
            return pool_window("avg", module.kernel_size, module.stride, module.padding, 1,
                               ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
                               divisor_override=module.divisor_override)  # fmt: skip
        return None
    if node.op != "call_function":
        return None
    if node.target in (F.conv2d, torch.conv2d):
        a = _bound(node, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
                   [None, None, None, 1, 0, 1, 1])  # fmt: skip
        if a is None or isinstance(a["weight"], fx.Node) and const(a["weight"]) is None:
            return None
        w, b = const(a["weight"]), const(a["bias"]) if isinstance(a["bias"], fx.Node) else a["bias"]
        if not isinstance(w, torch.Tensor) or (isinstance(a["bias"], fx.Node) and b is None):
            return None
        return conv_window(w, b, a["stride"], a["padding"], a["dilation"], int(a["groups"]))
    if node.target in (F.max_pool2d, torch.max_pool2d):
        a = _bound(node, ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
                   [None, None, None, 0, 1, False, False])  # fmt: skip
        return None if a is None else pool_window("max", a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                                                  ceil_mode=a["ceil_mode"], return_indices=a["return_indices"])  # fmt: skip
    if node.target in (F.avg_pool2d, torch._C._nn.avg_pool2d):
        a = _bound(node, ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                          "divisor_override"], [None, None, None, 0, False, True, None])  # fmt: skip
        return None if a is None else pool_window("avg", a["kernel_size"], a["stride"], a["padding"], 1,
                                                  ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
                                                  divisor_override=a["divisor_override"])  # fmt: skip
    return None


def _bound(node: fx.Node, names: list[str], defaults: list[Any]) -> dict[str, Any] | None:
    """Positional and keyword arguments of a call by parameter name (``None`` when they do not fit)."""
    if len(node.args) > len(names) or set(node.kwargs) - set(names):
        return None
    out = dict(zip(names, defaults, strict=True))
    out.update(zip(names, node.args, strict=False))
    out.update(node.kwargs)
    if any(isinstance(v, fx.Node) for k, v in out.items() if k not in ("input", "weight", "bias")):
        return None  # sizes computed at run time: not a fixed geometry
    return out


def pad_of(node: fx.Node, module: nn.Module | None) -> tuple[int, int] | None:
    """``(top, left)`` of a non-negative constant 2-d padding node, else ``None``."""
    if module is not None:
        if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)):
            pads = tuple(module.padding)
            return (pads[2], pads[0]) if min(pads) >= 0 else None
        return None
    if node.op == "call_function" and node.target is F.pad:
        a = _bound(node, ["input", "pad", "mode", "value"], [None, None, "constant", None])
        if a is None or a["mode"] != "constant" or len(a["pad"]) not in (2, 4) or min(a["pad"]) < 0:
            return None
        pads = (*a["pad"], 0, 0)[:4]
        return (pads[2], pads[0])
    return None


def symmetric_zero_pad(node: fx.Node, module: nn.Module | None) -> tuple[int, int] | None:
    """``(rows, columns)`` of a zero padding node that pads both sides of each axis alike, else ``None``."""
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)):
        pads, value = tuple(module.padding), getattr(module, "value", 0.0)
    elif module is None and node.op == "call_function" and node.target is F.pad:
        a = _bound(node, ["input", "pad", "mode", "value"], [None, None, "constant", None])
        if a is None or a["mode"] != "constant" or len(a["pad"]) != 4:
            return None
        pads, value = tuple(a["pad"]), a["value"] or 0.0
    else:
        return None
    if len(pads) != 4 or value != 0 or pads[0] != pads[1] or pads[2] != pads[3] or min(pads) < 0:
        return None
    return (int(pads[2]), int(pads[0]))


def is_pointwise(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether a node applies one function to every value of its first argument on its own."""
    if module is not None:
        if isinstance(module, nn.BatchNorm2d):
            return not module.training and module.running_mean is not None
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):
            return not module.training
        return isinstance(module, POINTWISE_MODULES)
    if node.op == "call_function":
        return node.target in POINTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in POINTWISE_METHODS


def batchnorm_affine(module: nn.Module | None) -> tuple[T, T] | None:
    """``(scale, shift)`` per channel of an eval-mode ``BatchNorm2d`` (``y = x * scale + shift``), else ``None``."""
    if not isinstance(module, nn.BatchNorm2d) or module.training:
        return None
    if module.running_mean is None or module.running_var is None:
        return None
    var, mean = module.running_var.double(), module.running_mean.double()
    scale = (var + module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight.detach().double()
    shift = -mean * scale
    if module.bias is not None:
        shift = shift + module.bias.detach().double()
    return scale, shift


def next_batchnorm(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, tuple[T, T]] | None:
    """The eval-mode BatchNorm that is the only reader of convolution ``node``, and its scale and shift."""
    users = list(node.users)
    if len(users) != 1 or users[0].op != "call_module" or users[0].args[:1] != (node,) or len(users[0].args) != 1:
        return None
    affine = batchnorm_affine(modules.get(str(users[0].target)))
    return None if affine is None else (users[0], affine)


def is_binary(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in BINARY and "alpha" not in node.kwargs and "out" not in node.kwargs
    return node.op == "call_method" and node.target in BINARY_METHODS and "alpha" not in node.kwargs


def cat_inputs(node: fx.Node) -> list[Any] | None:
    """The tensors of a channel concatenation ``torch.cat(tensors, 1)`` of 4-d maps, else ``None``."""
    if node.op != "call_function" or node.target is not torch.cat:
        return None
    a = _bound(node, ["tensors", "dim"], [None, 0])
    if a is None or a["dim"] not in (1, -3) or not isinstance(a["tensors"], (list, tuple)):
        return None
    return list(a["tensors"])


def whole_macs(node: fx.Node, module: nn.Module | None, v: Any, values: dict) -> int:
    """Multiply-adds of a convolution or linear layer run on whole tensors (batch of 1); 0 for other operations."""
    if not isinstance(v, torch.Tensor):
        return 0
    if isinstance(module, nn.Linear):
        return v.numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return v.numel() * module.weight[0].numel()
    if node.op == "call_function" and node.target in (torch.nn.functional.linear, torch.nn.functional.conv2d,
                                                      torch.conv2d):  # fmt: skip
        w = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        w = values.get(w) if isinstance(w, fx.Node) else None
        return v.numel() * w[0].numel() if isinstance(w, torch.Tensor) else 0
    return 0
