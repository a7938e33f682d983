"""Modified backward passes (guided backprop, deconvnet, DeepLIFT rescale) for any way a model writes them.

A ``TorchFunctionMode`` sees every activation call during the forward pass: ``nn.ReLU`` modules (also reused
ones and in-place ones), ``F.relu``, ``x.relu_()``, ``x.clamp(min=0)``, ReLU6 (``F.hardtanh``), SiLU, GELU...
Each one computes the same forward value and gets the method's rule in the backward pass: an autograd function
(DeepLIFT, deconvnet), or a hook on the activation's output that keeps the positive gradient before torch's own
backward of the activation (guided backprop). Nothing is attached to the model, so nothing can be left behind.

Guided backprop and deconvnet also look at every other call (an allow-list, ``_ops.py``): element-wise
operations pass their plain gradient only where it is the method's own (linear ones: additions, scaling by
constants); ReLUs written in other ways (``torch.maximum(x, 0)``, ``x * (x > 0)``, ``torch.where(x > 0, x, 0)``,
``F.threshold``) get the rule as gates; any other element-wise operation of the activations raises.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..core.errors import CnnlensError, UnsupportedOperationError, say
from ..core.options import flag
from . import _ops, _precision

T = torch.Tensor
GENERALIZE = flag(False, "apply the rule to activations that are not ReLU-like too (an extension of the method)")


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


class _Rescale(torch.autograd.Function):
    """An activation whose backward pass is DeepLIFT's rescale rule, given the reference's input ``x_ref`` and
    output ``y_ref`` at this activation (recorded by the reference pass). The rise ``f(x) - f(x0)`` is taken from
    the forward values, so ``f`` runs once (again only where a derivative is due)."""

    @staticmethod
    def forward(ctx: Any, x: T, f: Callable[[T], T], mode: RescaleMode, x_ref: T, y_ref: T) -> T:
        y = f(x)
        ctx.f, ctx.mode = f, mode
        ctx.save_for_backward(x, x_ref, _precision.working(y) - _precision.working(y_ref))
        return y

    @staticmethod
    def backward(ctx: Any, gy: T) -> tuple:
        x, x_ref, rise = ctx.saved_tensors
        return ctx.mode.rescale_grad(ctx.f, x, x_ref, rise, gy), None, None, None, None


class _RescalePool(torch.autograd.Function):
    """2-D max pooling whose backward pass routes each window's difference from the reference (recorded by the
    reference pass: input, output, arg-max indices) to the arg-max positions of the input and the reference."""

    @staticmethod
    def forward(ctx: Any, x: T, kw: dict, mode: RescaleMode, ref: tuple[T, T, T]) -> tuple[T, T]:
        y, idx = F.max_pool2d_with_indices(x, **kw)
        ctx.mode = mode
        ctx.save_for_backward(x, y, idx, *ref)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx: Any, gy: T, _gidx: T) -> tuple:
        x, y, idx, x_ref, y_ref, i_ref = ctx.saved_tensors
        return ctx.mode.maxpool_grad((x, x_ref), (y, y_ref), (idx, i_ref), gy), None, None, None


class RuleMode(TorchFunctionMode):
    """Base: reroutes activations (and max pooling when ``pool_rule``) through the rule of a subclass."""

    method = ""
    pool_rule = False

    def __init__(self, generalize: bool = False) -> None:
        super().__init__()
        self.generalize = generalize
        self.seen: set[str] = set()

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            name = _ops.activation_name(func)
            if name is not None:
                self.check(name)
                return self.rule(func, args, kwargs, 0, name)
            if self.pool_rule and func in (F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d):
                return self._maxpool(func, args, kwargs)
        return self.other(func, args, kwargs)

    def rule(self, func: Callable, args: tuple, kwargs: dict, pos: int | str, name: str) -> T:
        """The call, with the method's rule for the operand at ``pos`` in the backward pass."""
        self.seen.add(name)
        x, f, inplace = _ops.at(func, args, kwargs, pos)
        if not inplace:
            return self.apply(x, f, name, _others_need_grad(args, kwargs, pos))
        y = self.apply(x.clone(), f, name, _others_need_grad(args, kwargs, pos))
        return x.copy_(y)

    def apply(self, x: T, f: Callable[[T], T], name: str, others_need_grad: bool) -> T:
        """``f(x)`` with the rule in its backward pass; the other operands of the call are constants to it."""
        return _Activation.apply(x, f, self, name)

    def other(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Any call that is neither an activation nor a pooling the mode has a rule for (subclasses may check)."""
        return func(*args, **kwargs)

    def _maxpool(self, func: Callable, args: tuple, kwargs: dict) -> T | tuple[T, T]:
        names = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
        kw = dict(zip(names, args[1:], strict=False), **kwargs)
        want_idx = kw.pop("return_indices", False) or func is F.max_pool2d_with_indices
        if kw.get("stride") in (None, []):
            kw["stride"] = kw["kernel_size"]
        self.seen.add("max_pool2d")
        y, idx = self.pool(args[0], kw)
        return (y, idx) if want_idx else y

    def pool(self, x: T, kw: dict) -> tuple[T, T]:
        """``max_pool2d_with_indices(x, **kw)`` with the method's rule in its backward pass (with ``pool_rule``)."""
        raise NotImplementedError

    def check(self, name: str) -> None:
        """Raise when the method has no rule for this activation (subclasses decide)."""

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        raise NotImplementedError


_AVOID = "Use a method without this assumption (saliency, integrated_gradients, deeplift)"


def _others_need_grad(args: tuple, kwargs: dict, pos: int | str) -> bool:
    """Whether an operand of the call other than the one at ``pos`` is on the gradient path."""
    return any(isinstance(v, torch.Tensor) and v.requires_grad for k, v in _ops.operands(args, kwargs) if k != pos)


def _positive(g: T) -> T:
    return g.clamp(min=0)


class _GatedMode(RuleMode):
    """Guided backprop and deconvnet: a rule for ReLU-like gates, the plain gradient for linear operations, an
    error for any other element-wise operation of the activations.

    Results computed from the activations without a gradient (comparisons, ``.detach()``, arg-max indices) are
    remembered as masks: a 0/1 mask that multiplies an activation (or selects it in ``where``/``masked_fill``)
    is a gate; any other use of such a result hides a function of the activations from the rule and raises.
    """

    def __init__(self, generalize: bool = False) -> None:
        super().__init__(generalize)
        self._masks: dict[int, weakref.ref] = {}

    def check(self, name: str) -> None:
        if name not in _ops.GATES and not self.generalize:
            raise UnsupportedOperationError(
                f"{self.method} is defined for ReLU-like activations (ReLU, ReLU6, hardtanh, clamp), but this "
                f"model uses {name}. {_AVOID}, or pass {say('generalize=True', '--set generalize=True')} to apply the "
                f"rule to {name} anyway (positive gradients only), knowing that this is an extension of the published "
                f"method."
            )

    def other(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        ops = _ops.operands(args, kwargs)
        grad = [k for k, v in ops if isinstance(v, torch.Tensor) and v.requires_grad]
        masks = [k for k, v in ops if self._is_mask(v)] if self._masks else []
        if not grad and not masks:
            return func(*args, **kwargs)
        name = _ops.op_name(func)
        if name.endswith("_like") or name.startswith("new_"):  # a tensor of the same shape: no values are read
            return func(*args, **kwargs)
        if grad and masks:
            return self._gate_by_mask(func, args, kwargs, name, grad, masks)
        elementwise = _ops.pointwise(name) and (
            name not in ("max", "min") or (len(args) > 1 and isinstance(args[1], T))
        )
        if grad and elementwise and name not in _ops.NOT_DIFFERENTIABLE and name not in _ops.LINEAR:
            if name in _ops.SCALING and len(grad) == 1 and (name == "mul" or grad[0] in (0, "input")):
                return func(*args, **kwargs)  # scaling by a constant
            if name in _ops.BINARY_GATES and len(grad) == 1:
                return self.rule(func, args, kwargs, grad[0], name)  # torch.maximum(x, 0): a ReLU
            if name in _ops.SCALING and len(grad) > 1 and self.generalize:
                return func(*args, **kwargs)  # a product of activations, its ordinary gradient (the extension)
            if self.generalize and len(grad) == 1:
                return self.rule(func, args, kwargs, grad[0], name)
            what = (
                "products of activations (x * y, as in squeeze-excitation or attention)"
                if name in _ops.SCALING
                else f"'{name}'"
            )
            raise self._uncovered(what, generalize=True)
        out = func(*args, **kwargs)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t.requires_grad:  # computed from activations, without gradient
                self._masks[id(t)] = weakref.ref(t)
        return out

    def _is_mask(self, v: Any) -> bool:
        ref = self._masks.get(id(v)) if isinstance(v, torch.Tensor) else None
        return ref is not None and ref() is v

    def _gate_by_mask(self, func: Callable, args: tuple, kwargs: dict, name: str, grad: list, masks: list) -> T:
        """``x * (x > 0)``, ``torch.where(x > 0, x, c)``, ``x.masked_fill(x < 0, c)``: a gate, else an error."""
        pos = grad[0]
        gate = name in _ops.MASK_GATES and len(grad) == 1
        if gate and name == "mul":
            mask = args[1 - pos] if isinstance(pos, int) and len(args) == 2 else None
            gate = mask is not None and bool((mask.dtype == torch.bool) or ((mask == 0) | (mask == 1)).all())
        elif gate and name == "where":
            gate = masks in ([0], ["condition"]) and pos in (1, 2, "input", "other")
        elif gate:  # masked_fill
            gate = masks in ([1], ["mask"]) and pos in (0, "input")
        if not gate:
            raise self._uncovered(
                f"'{name}' with values computed from the activations without a gradient (a comparison, "
                f".detach(), arg-max indices)",
                generalize=False,
            )
        return self.rule(func, args, kwargs, pos, name)

    def _uncovered(self, what: str, generalize: bool) -> UnsupportedOperationError:
        extra = f", or pass {say('generalize=True', '--set generalize=True')} to apply the rule to it anyway (an extension of the method)"
        return UnsupportedOperationError(
            f"{self.method} applies its rule to ReLU-like activations and passes the gradient of linear operations "
            f"unchanged, but this model applies {what} to its activations, which is neither: the map would "
            f"silently be another method's. {_AVOID}, or write the activation as nn.ReLU, F.relu or "
            f"clamp(min=0){extra if generalize else ''}."
        )


class GuidedMode(_GatedMode):
    """Guided backprop: only positive gradients pass through an activation, times its local derivative.

    The activation runs as it is and a hook on its output keeps the positive part of the gradient that reaches
    it, so torch's own backward of the activation applies the local derivative (no second autograd pass). An
    activation with another operand on the gradient path (``clamp`` with a tensor bound that requires grad) runs
    through an autograd function that treats that operand as a constant, as the rule does."""

    method = "guided_backprop"

    def apply(self, x: T, f: Callable[[T], T], name: str, others_need_grad: bool) -> T:
        if others_need_grad:
            return _Activation.apply(x, f, self, name)
        y = f(x)
        if y.requires_grad:
            y.register_hook(_positive)
        return y

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        return _vjp(f, x, gy.clamp(min=0))


class DeconvMode(_GatedMode):
    """Deconvnet: an activation passes the positive part of the incoming gradient, ignoring its input."""

    method = "deconvnet"

    def activation_grad(self, name: str, f: Callable[[T], T], x: T, gy: T) -> T:
        return gy.clamp(min=0)


class ReferenceChanged(Exception):
    """A recorded reference value was modified in place after the reference pass: record copies instead."""


class RescaleMode(RuleMode):
    """DeepLIFT rescale rule: secant slopes instead of derivatives, from a reference pass and an input pass.

    ``with mode.recording():`` around the forward pass of the references records, at every activation and max
    pooling in the order they run, the reference's values; ``with mode.replaying():`` around the forward pass of
    the inputs (the same number of rows, paired row by row) gives each of them the rule: every elementwise
    activation gets the multiplier ``(f(x) - f(x0)) / (x - x0)`` (the derivative where ``|x - x0| < eps``); max
    pooling routes each window's difference to the arg-max positions of the input and the reference. Only the
    inputs' forward pass builds the graph the backward pass runs through (a pass of ``n`` rows, not ``2n``).
    A :class:`~cnnlens.engine.ReferencePass` of the engine: when the model changed a recorded value in place
    (:class:`ReferenceChanged`), ``retry`` switches to recording copies and the engine runs the chunk again.
    """

    method = "deeplift"
    pool_rule = True
    eps = 1e-10

    def __init__(self, generalize: bool = False) -> None:
        super().__init__(generalize)
        self._state = ""  # "record", "replay" or "" (outside both: an error)
        self._values: list[tuple] = []  # per activation / pooling: the reference's tensors and their versions
        self._next = 0
        self.copies = False  # record copies (after a model modified a recorded value in place)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self._state, self._values = "record", []
        try:
            yield
        finally:
            self._state = ""

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        self._state, self._next = "replay", 0
        try:
            yield
            if self._next != len(self._values):
                raise self._differs()
        finally:
            self._state, self._values = "", []

    def retry(self, err: Exception) -> bool:
        """Whether the chunk that raised ``err`` runs again: after a recorded value changed, with copies."""
        if not isinstance(err, ReferenceChanged):
            return False
        self.copies = True
        return True

    def _record(self, *ts: T) -> None:
        ts = tuple(t.detach().clone() if self.copies else t.detach() for t in ts)
        self._values.append((ts, tuple(t._version for t in ts)))

    def _take(self, x: T, kind: int) -> tuple[T, ...]:
        if self._state != "replay":
            raise RuntimeError("RescaleMode: the inputs' forward pass runs inside replaying(), after recording()")
        if self._next >= len(self._values):
            raise self._differs()
        ts, versions = self._values[self._next]
        self._next += 1
        if len(ts) != kind or ts[0].shape != x.shape:
            raise self._differs()
        if any(t._version != v for t, v in zip(ts, versions, strict=True)):
            raise ReferenceChanged
        return ts

    def _differs(self) -> CnnlensError:
        return CnnlensError(
            f"{self.method}: the model ran other activations on the baseline than on the input (control flow that "
            f"depends on the values), so they cannot be paired; choose a baseline on which the model takes the same "
            f"path, or use integrated_gradients, which needs no pairing"
        )

    def apply(self, x: T, f: Callable[[T], T], name: str, others_need_grad: bool) -> T:
        if self._state == "record":
            y = f(x)
            self._record(x, y)
            return y
        x_ref, y_ref = self._take(x, 2)
        return _Rescale.apply(x, f, self, x_ref, y_ref)

    def pool(self, x: T, kw: dict) -> tuple[T, T]:
        if self._state == "record":
            y, idx = F.max_pool2d_with_indices(x, **kw)
            self._record(x, y, idx)
            return y, idx
        return _RescalePool.apply(x, kw, self, self._take(x, 3))

    def rescale_grad(self, f: Callable[[T], T], x: T, x_ref: T, rise: T, gy: T) -> T:
        """The multipliers times the incoming gradient."""
        dx = _precision.working(x) - _precision.working(x_ref)
        small = _precision.tiny_difference(dx, x, x_ref, self.eps)
        if small.any():  # no secant where input and reference agree: the derivative there
            g = _precision.working(gy) * rise / dx.masked_fill(small, 1.0)
            g = torch.where(small, _precision.working(_vjp(f, x, gy)), g)
        else:
            g = _precision.working(gy) * rise / dx
        return g.to(x.dtype)

    def maxpool_grad(self, x: tuple[T, T], y: tuple[T, T], idx: tuple[T, T], gy: T) -> T:
        """``x``, ``y``, ``idx``: (input, reference) pairs of the pooling's input, output and arg-max indices."""
        x_in, x_ref = (_precision.working(t) for t in x)
        y_in, y_ref = (_precision.working(t) for t in y)
        i_in, i_ref = idx
        g_in = _precision.working(gy)
        top = torch.maximum(y_in, y_ref)
        flat = x_in.flatten(2)

        def unpool(v: T, i: T) -> T:
            return torch.zeros_like(flat).scatter_add_(2, i.flatten(2), v.flatten(2)).view_as(x_in)

        contrib = unpool(g_in * (top - y_ref), i_in) + unpool(g_in * (y_in - top), i_ref)
        dx = x_in - x_ref
        small = _precision.tiny_difference(dx, *x, self.eps)
        g = torch.where(small, unpool(g_in, i_in), contrib / torch.where(small, torch.ones_like(dx), dx))
        return g.to(x[0].dtype)
