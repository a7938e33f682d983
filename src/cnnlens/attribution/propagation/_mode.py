"""Relevance propagation wherever an operation runs, with nothing attached to the model.

``RelevanceMode`` is a ``TorchFunctionMode``: during the forward pass it sees every call on a tensor that
carries relevance (one computed from the inputs), whether a module, a functional call, an in-place operation or
a reused module makes it, and reroutes it through an autograd function that computes the same forward value and
whose backward pass applies the LRP rule. In the backward pass the gradient *is* the relevance: the pass starts
from the initial relevance at the logits and arrives at the inputs with their relevance.

* ``F.conv1d/2d/3d`` and ``F.linear`` (what ``nn.Conv2d`` and ``nn.Linear`` call): the composite's rule. A
  ``F.pad`` with zeros right before a convolution and a BatchNorm (eval mode) right after it are folded into it.
* Sums (``+``, ``-``, ``torch.add``, ``sum``, ``mean``, average and adaptive average pooling, interpolation,
  scaling by a constant): each summand gets relevance in proportion to its contribution.
* Element-wise activations (ReLU, GELU, SiLU, Hardswish, sigmoid...) and a BatchNorm that follows no layer:
  relevance passes unchanged.
* ``x * g`` with ``g`` a gate, a sigmoid's or hardsigmoid's output (squeeze-and-excitation): ``g`` is a fixed
  weight, all relevance goes to ``x`` (signal-take-all, Arras et al. 2017). Other products of activations raise.
* ``F.layer_norm``, ``F.group_norm``: the linear map ``(x - mean) / std * w + b`` with ``std`` held constant
  (Ali et al. 2022; Achtibat et al. 2024); the bias keeps its share unless ``zero_bias``.
* Reshaping, indexing, concatenation, padding, dropout (eval) and max pooling (winner takes all): the gradient
  routes relevance to where the values came from.

Anything else that carries relevance raises ``UnsupportedOperationError`` naming the operation and the module it
ran in: a silent gradient there would be a wrong explanation. So does relevance that comes out of an operation the
mode never saw (a custom autograd Function, compiled code): every autograd node it reaches must be one it made.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...core.errors import CnnlensError, UnsupportedOperationError
from .. import _ops
from ._functions import (
    _BN_ARGS,
    _CONV_ARGS,
    _DIVISIONS,
    _GATES,
    _IN_PLACE,
    _LINEAR_MAPS,
    _MAX_POOLS,
    _NORM_ARGS,
    _PRODUCTS,
    _ROUTES,
    _SUMS,
    Tn,
    _bind,
    _carries,
    _GateFn,
    _interpolation_mode,
    _LinearFn,
    _op_name,
    _PassFn,
    _ShareFn,
    _tensors,
    _zero,
    norm_maps,
)
from ._layer import LinearCall, conv_layer
from .composites import Composite
from .rules import RULES, Rule, ZBox, box_elsewhere

T = torch.Tensor


@dataclass
class _Last:
    """The latest linear layer call, which a BatchNorm right after it is folded into."""

    out: T
    src: T
    layer: LinearCall
    rule: Rule
    record: dict | None


class RelevanceMode(TorchFunctionMode):
    """Active during the forward passes of one explanation (see the module docstring).

    ``options``: ``epsilon``, ``gamma``, ``stabilizer``, ``zero_bias`` and ``box`` (the z^B bounds or ``None``).
    ``start``: the initial relevance ``(logits, d score / d logits) -> (N, K)`` the backward pass starts from
    (the engine's :class:`~cnnlens.engine.Objective`). ``records``: which rule ran at which layer in the first
    forward pass (``Explanation.info["rules"]``).
    """

    def __init__(
        self,
        method: str,
        model: nn.Module,
        composite: Composite,
        options: dict[str, Any],
        start: Callable[[T, T], T],
    ) -> None:
        super().__init__()
        self.method, self.composite, self.options, self._start = method, composite, options, start
        modules = dict(model.named_modules())
        self.names: dict[int, str] = {}
        self.owners: dict[int, tuple[str, nn.Module]] = {}
        for name, m in modules.items():
            self.names.setdefault(id(m), name)
            for t in itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False)):
                self.owners.setdefault(id(t), (name, m))
        unknown = [n for n in composite.layer_names() if n not in modules]
        if unknown:
            raise CnnlensError(
                f"the composite names layer(s) {', '.join(map(repr, unknown))}, which {type(model).__name__} does "
                f"not have; see cnnlens.models.layer_names(model)"
            )
        self.records: list[dict] = []
        self._recording = True
        self._bound: dict[tuple, Rule] = {}
        self._count = 0
        self._last: _Last | None = None
        self._pad: tuple[T, T, tuple[int, ...]] | None = None  # the latest zero padding: output, input, F.pad list
        self._seen: set = set()  # autograd nodes of the operations this mode saw in the current forward pass
        self._gates: set = set()  # autograd nodes of gates: sigmoid/hardsigmoid outputs (reshaped, expanded)

    def start(self, logits: T, grad: T) -> T:
        """The initial relevance at the logits (see ``start`` above)."""
        return self._start(logits, grad)

    def __enter__(self) -> RelevanceMode:
        self._count, self._last, self._pad, self._seen, self._gates = 0, None, None, set(), set()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._recording, self._last, self._pad, self._seen, self._gates = False, None, None, set(), set()
        super().__exit__(*exc)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if not torch.is_grad_enabled() or not _carries(args, kwargs):
            return func(*args, **kwargs)
        self._check_sources(func, args, kwargs)
        handler = _HANDLERS.get(func)
        activation = _ops.activation_name(func) if handler is None else None
        if handler is not None:
            out = handler(self, func, args, kwargs)
        elif activation is not None:
            out = self._activation(func, args, kwargs, activation)
        else:
            out = func(*args, **kwargs)
            if func in _MAX_POOLS:
                self._record(self._where(), _op_name(func), "winner takes all")
            if func not in _ROUTES and _carries((out,), {}):
                raise self._unsupported(_op_name(func))
        like = func in (Tn.expand_as, Tn.view_as, Tn.reshape_as)  # the second argument gives a shape only
        if (
            (handler is None or func is F.interpolate)
            and all(  # a gate reshaped, resized, copied is a gate
                self._is_gate(t) for t in _tensors(args[:1] if like else args, kwargs)
            )
        ):
            self._gates.update(t.grad_fn for t in _tensors((out,)))
        for t in _tensors((out,)):
            if t.grad_fn is not None:
                self._seen.add(t.grad_fn)
        return out

    def _check_sources(self, func: Callable, args: tuple, kwargs: dict) -> None:
        """Every relevance-carrying argument must come from the inputs or from an operation this mode saw: one that
        ran out of its sight (a custom autograd Function, compiled code) would pass relevance by its own gradient."""
        for t in _tensors(args, kwargs):
            if t.grad_fn is not None and t.grad_fn not in self._seen:
                self._recording = True  # to name the module
                source = type(t.grad_fn).__name__.removesuffix("Backward")
                raise UnsupportedOperationError(
                    f"{self.method}: relevance would reach {_op_name(func)} (run in {self._where()}) from {source}, "
                    f"an operation it cannot see (a custom autograd Function or compiled code), whose own gradient "
                    f"would pass the relevance, silently wrong. Write that operation with torch operations, or use a "
                    f"gradient method (input_x_gradient, integrated_gradients) for this model"
                )

    # ---- convolutions, fully connected layers, BatchNorm, padding ------------------------------------------
    def _linear(self, func: Callable, args: tuple, kwargs: dict) -> T:
        call = _bind(_CONV_ARGS, args, kwargs)
        x, weight, bias = call["input"], call["weight"], call.get("bias")
        if weight.requires_grad or (bias is not None and bias.requires_grad) or not x.requires_grad:
            raise self._unsupported(f"{_op_name(func)} with weights computed from the input")
        owner = self.owners.get(id(weight))
        name = owner[0] if owner else f"{_op_name(func)} call {self._count + 1}"
        if func is F.linear:
            src, layer = x, LinearCall(name, weight, bias)
        else:
            pad, src, folded = self._pad, x, None
            if pad is not None and pad[0] is x and len(pad[2]) == 2 * (weight.dim() - 2):
                src, folded = pad[1], pad[2]  # the padding is folded into the convolution
            layer = conv_layer(name, src, weight, bias, call, folded)
        first = self._count == 0 and not self.options.get("cut", False)  # the layer the input enters
        rule = self._rule(name, owner[1] if owner else None, layer.kind, first)
        self._count += 1
        out = _LinearFn.apply(src, layer, rule, lambda: func(*args, **kwargs))
        record = self._record(name, _op_name(func), str(rule))
        self._last = _Last(out, src, layer, rule, record)
        return out

    def _rule(self, name: str, module: nn.Module | None, kind: str, first: bool) -> Rule:
        key = (name, kind, first)
        if key not in self._bound:
            spec = self.composite.rule_for(name, module, kind, first)
            rule = RULES[spec] if isinstance(spec, str) else spec
            if not first and isinstance(rule, ZBox) and (rule.low is None or rule.high is None):
                raise box_elsewhere(self.method, name, bool(self.options.get("cut")))
            self._bound[key] = rule.bind(self.options if first else {**self.options, "box": None})
        return self._bound[key]

    def _batch_norm(self, func: Callable, args: tuple, kwargs: dict) -> T:
        call = _bind(_BN_ARGS, args, kwargs)
        x, mean, var = call["input"], call.get("running_mean"), call.get("running_var")
        owner = self.owners.get(id(call.get("weight"))) or self.owners.get(id(mean))
        name = owner[0] if owner else "batch_norm"
        if call.get("training") or mean is None or var is None:
            raise self._unsupported(
                "batch_norm with batch statistics",
                "a BatchNorm without running statistics normalizes each batch by itself; give it running "
                "statistics (track_running_stats=True) so that one image is explained on its own",
            )
        last = self._last
        if last is not None and last.out is x:
            layer = last.layer.fold(name, mean, var, call.get("weight"), call.get("bias"), call.get("eps", 1e-5))
            out = _LinearFn.apply(last.src, layer, last.rule, lambda: func(*args, **kwargs))
            if last.record is not None:
                last.record["operation"] += f" + {name} (folded)"
            self._last = None
            return out
        self._record(name, "batch_norm", "pass")
        return _PassFn.apply(x, lambda t: func(t, *args[1:], **kwargs))

    def _pad_call(self, func: Callable, args: tuple, kwargs: dict) -> T:
        out = func(*args, **kwargs)
        call = _bind(("input", "pad", "mode", "value"), args, kwargs)
        pad = tuple(int(p) for p in call["pad"])
        if call.get("mode", "constant") == "constant" and not call.get("value") and min(pad, default=0) >= 0:
            self._pad = (out, call["input"], pad)
        return out

    # ---- sums, scalings, activations -------------------------------------------------------------------------
    def _sum(self, func: Callable, args: tuple, kwargs: dict) -> T:
        """``+``, ``-``, ``torch.add``...: constants (e.g. a bias) keep their share unless ``zero_bias``."""
        base = _IN_PLACE.get(func, func)
        if not self.options["zero_bias"]:
            return self._share(func, base, args, kwargs, "proportional")

        def without_constants(*a: Any) -> T:
            return base(*[_zero(v) if i < 2 and not _carries((v,), {}) else v for i, v in enumerate(a)], **kwargs)

        return self._share(func, base, args, kwargs, "proportional", without_constants)

    def _linear_map(self, func: Callable, args: tuple, kwargs: dict) -> T:
        """Sums over positions (``sum``, ``mean``, pooling, interpolation) and scaling by constants."""
        base = _IN_PLACE.get(func, func)
        n = sum(_carries((a,), {}) for a in args)
        if base in _PRODUCTS and len(args) == 2 and not kwargs and (n == 2 or self._cut_gate(args)):
            return self._product(func, base, args)
        if n != 1 or _carries((), kwargs) or (base in _DIVISIONS and (not _carries(args[:1], {}) or kwargs)):
            what = "a product of two tensors computed from the input" if base in _PRODUCTS else "this use"
            raise self._unsupported(
                f"{_op_name(func)} ({what})",
                "LRP has no rule for dividing a signal by another, nor for a product unless one factor is a gate "
                "(a sigmoid's output, as in squeeze-and-excitation); use a gradient method (input_x_gradient, "
                "integrated_gradients) for this model",
            )
        if func is F.interpolate and _interpolation_mode(args, kwargs).startswith("nearest"):
            return func(*args, **kwargs)  # copies: the gradient routes relevance
        return self._share(func, base, args, kwargs, "proportional")

    def _product(self, func: Callable, base: Callable, args: tuple) -> T:
        """``x * g``, ``g`` a gate: a fixed weight, all relevance to ``x``. Two gates or none: refused."""
        gate = [i for i in (0, 1) if self._is_gate(args[i])]
        if len(gate) != 1:
            what = "both factors are gates" if gate else "neither factor is a gate, a sigmoid's or hardsigmoid's output"
            raise self._unsupported(
                f"{_op_name(func)} (a product of two tensors computed from the input; {what})",
                "a product is explained only when one factor is a gate (as in squeeze-and-excitation), which is "
                "then held as a weight; use a gradient method (input_x_gradient, integrated_gradients) for this model",
            )
        g, in_place = gate[0], func in _IN_PLACE
        xs = [a.clone() if in_place and i == 0 else a for i, a in enumerate(args)]
        self._record(self._where(), _op_name(func), "gate (held as a weight)")
        out = _GateFn.apply(base, g == 0, self.options["stabilizer"], xs[1 - g], xs[g])
        return self._overwrite(args[0], out) if in_place else out

    def _cut_gate(self, args: tuple) -> bool:
        """Cut at a layer (``layer_lrp``), a gate times a tensor the model does not own still gates an activation."""
        gate = [self._is_gate(a) for a in args]
        other = args[gate.index(True) - 1] if sum(gate) == 1 else None
        return bool(self.options.get("cut")) and isinstance(other, T) and id(other) not in self.owners

    def _is_gate(self, t: T) -> bool:
        return isinstance(t, T) and t.grad_fn is not None and t.grad_fn in self._gates

    def _norm(self, func: Callable, args: tuple, kwargs: dict) -> T:
        """LayerNorm / GroupNorm: a linear map ``(x - mean) / std * w + b`` with ``std`` held constant (Ali et al.
        2022; Achtibat et al. 2024): relevance shared in proportion to the contributions, like a layer."""
        call = _bind(_NORM_ARGS[func], args, kwargs)
        if not _carries((call["input"],), {}) or _carries((), {k: v for k, v in call.items() if k != "input"}):
            raise self._unsupported(f"{_op_name(func)} with weights computed from the input")
        f, f_eff = norm_maps(func, call, self.options["zero_bias"])
        self._record(self._where(), _op_name(func), "normalization (scale held constant)")
        return _ShareFn.apply(f, f_eff, self.options["stabilizer"], call["input"])

    def _share(
        self, func: Callable, base: Callable, args: tuple, kwargs: dict, rule: str, f_eff: Callable | None = None
    ) -> T:
        positions = [i for i, a in enumerate(args) if _carries((a,), {})]
        if _carries((), kwargs) or not positions:
            raise self._unsupported(f"{_op_name(func)} with a keyword tensor argument")
        in_place = func in _IN_PLACE
        xs = [args[i].clone() if in_place and i == 0 else args[i] for i in positions]

        def at(fn: Callable) -> Callable:
            def call(*ts: T) -> T:
                a = list(args)
                for i, t in zip(positions, ts, strict=True):
                    a[i] = t
                return fn(*a)

            return call

        def full(*a: Any) -> T:
            return base(*a, **kwargs)

        self._record(self._where(), _op_name(func), rule)
        out = _ShareFn.apply(at(full), at(f_eff or full), self.options["stabilizer"], *xs)
        return self._overwrite(args[0], out) if in_place else out

    def _activation(self, func: Callable, args: tuple, kwargs: dict, name: str) -> T:
        x, f, in_place = _ops.at(func, args, kwargs, 0)
        if not (isinstance(x, T) and x.requires_grad):
            return func(*args, **kwargs)
        self._record(self._where(), name, "pass")
        out = _PassFn.apply(x, f) if not in_place else self._overwrite(x, _PassFn.apply(x.clone(), f))
        if name in _GATES:
            self._gates.add(out.grad_fn)
        return out

    def _overwrite(self, t: T, value: T) -> T:
        """An in-place operation's result: ``t`` now holds ``value``, so it is no longer a layer's raw output (no
        BatchNorm is folded through it) nor a zero-padded input."""
        if self._last is not None and self._last.out is t:
            self._last = None
        if self._pad is not None and self._pad[0] is t:
            self._pad = None
        return t.copy_(value)

    # ---- where things ran ---------------------------------------------------------------------------------
    def _record(self, where: str, operation: str, rule: str) -> dict | None:
        if not self._recording:
            return None
        entry = {"layer": where, "operation": operation, "rule": rule}
        self.records.append(entry)
        return entry

    def _where(self) -> str:
        """The innermost module of the model whose ``forward`` is running (found on the call stack)."""
        if not self._recording:
            return ""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_argcount and code.co_varnames[0] == "self":
                name = self.names.get(id(frame.f_locals.get("self")))
                if name is not None:
                    return name or "the model's forward"
            frame = frame.f_back
        return "code outside the model's modules"

    def _unsupported(self, what: str, hint: str = "") -> UnsupportedOperationError:
        self._recording = True  # to name the module
        where = self._where()
        hint = hint or (
            "explain a model built from these operations, or use a gradient method (input_x_gradient, "
            "integrated_gradients) for this one"
        )
        return UnsupportedOperationError(
            f"{self.method}: no relevance rule for {what}, run in {where}. Relevance goes through convolutions "
            f"and fully connected layers (by the composite's rules), BatchNorm, sums and means, average and max "
            f"pooling, element-wise activations, scaling by constants, concatenation and reshaping; {hint}"
        )


_HANDLERS: dict[Callable, Callable] = {
    **dict.fromkeys((F.conv1d, F.conv2d, F.conv3d, F.linear), RelevanceMode._linear),
    F.batch_norm: RelevanceMode._batch_norm,
    F.pad: RelevanceMode._pad_call,
    **dict.fromkeys((F.layer_norm, F.group_norm), RelevanceMode._norm),
    **dict.fromkeys(_SUMS | {Tn.add_, Tn.__iadd__, Tn.sub_, Tn.__isub__}, RelevanceMode._sum),
    **dict.fromkeys(
        _LINEAR_MAPS | {Tn.mul_, Tn.__imul__, Tn.div_, Tn.__itruediv__, Tn.neg_}, RelevanceMode._linear_map
    ),
}
