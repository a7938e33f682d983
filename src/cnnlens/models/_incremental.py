"""Incremental inference: the model's logits for many copies of one image, each changed inside a small box.

An occluded image differs from the original only inside its window, so most of a forward pass recomputes values
already known (Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster Occlusion-based
Deep CNN Explanations", SIGMOD 2019). :class:`Incremental` traces the model with ``torch.fx`` down to its primitive
operations, runs the clean image once keeping every node's output (:meth:`Incremental.clean`), and then, for a
batch of changed copies (:meth:`Incremental.run`), computes every node only on the part of its output the change
can reach (a box per row, the same size for the whole batch; see :mod:`cnnlens.models._regions`), reading the rest
from the clean outputs. Operations with global reach (global pooling, flatten, linear, anything unknown) run on
the full, by then small, tensors. The result equals full re-inference up to float rounding.

Each multiply-add costs less than in the model's own forward pass (``fold`` / ``channels_last`` turn the first two
off): an eval-mode BatchNorm read only after a convolution is folded into a copy of that convolution's weights;
maps are kept channels-last (CPU convolutions run faster on them); 1 x 1 convolutions run as one matrix product;
an activation overwrites a fresh value nothing else reads; a symmetric zero padding read only by a convolution is
left to that convolution when the map is computed whole. The model's parameters and buffers are never changed.

Cost is counted in multiply-adds of convolutions and linear layers (other operations are not counted):
``Incremental.run`` returns the fraction of a full forward pass's multiply-adds the batch cost, per row.

Approximate mode (``field=tau``): a changed region wider or taller than ``tau`` times its feature map is cut to
that size around its centre (Krypton's projective-field threshold); values outside are read from the clean image.

Models that do not trace, have hooks, or use in-place operations whose input is read again raise
:class:`~cnnlens.models._graph.Untraceable` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ._graph import Untraceable, _mutated
from ._regions import (
    Window,
    cat_inputs,
    in_place,
    is_binary,
    is_pointwise,
    next_batchnorm,
    pad_of,
    symmetric_zero_pad,
    whole_macs,
    window_of,
)
from ._tiles import Patch, _box, _capped, _read, _union
from ._tracing import trace

T = torch.Tensor
# What a plan step carries for its kind: "window" its Window, "pad" (top, left), "pointwise" the in-place function
# (or False / None: none), "binary" its input-dependent operands that are not maps of its size; else None.
Extra = Window | tuple[int, int] | Callable[[T], T] | list[fx.Node] | bool | None
Step = tuple[fx.Node, str, tuple[Extra, int]]  # node, kind, (extra, its full multiply-adds)


@dataclass
class Full:
    """A changed value computed whole, one row per changed copy."""

    value: Any


@dataclass
class Unpadded(Full):
    """A changed value computed whole, before a zero padding ``pad`` (rows, columns) that the convolution reading
    it applies itself (no padded copy)."""

    pad: tuple[int, int] = (0, 0)


@dataclass
class Clean:
    """One image's clean run: every node's output (batch of 1) and the logits."""

    values: dict[fx.Node, Any]
    logits: T


def _tensorish(v: Any) -> bool:
    return isinstance(v, torch.Tensor) or (isinstance(v, (tuple, list)) and any(_tensorish(u) for u in v))


def _expand(v: Any, n: int) -> Any:
    if isinstance(v, torch.Tensor):
        return v.expand(n, *v.shape[1:]) if v.dim() > 0 else v
    if isinstance(v, (tuple, list)):
        return type(v)(_expand(u, n) for u in v)
    return v


class Incremental:
    """``model`` traced for incremental inference; see the module docstring. Build inside ``frozen(model)``."""

    def __init__(self, model: nn.Module, fold: bool = True, channels_last: bool = True) -> None:
        graph = trace(model)
        self.model, self.graph = model, graph
        self.modules = dict(model.named_modules())
        self.gm = fx.GraphModule(model, graph)
        self.nodes = list(graph.nodes)
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise Untraceable(f"the traced graph takes {len(inputs)} inputs, not one image batch")
        self.input = inputs[0]
        self.output = next(n for n in self.nodes if n.op == "output")
        self.dependent = _closure(self.input)
        order = {n: i for i, n in enumerate(self.nodes)}
        self.mutating: set[fx.Node] = set()
        for m in self.nodes:
            a = _mutated(m, self.modules)
            if a is None:
                continue
            if isinstance(m.kwargs.get("out"), fx.Node) or (m.args and m.args[0] is not a):
                raise Untraceable(f"{m.name} writes its result into another tensor (out=)")
            if any(order[u] > order[m] for u in a.users if u is not m):
                raise Untraceable(f"{m.name} changes {a.name} in place and {a.name} is read again afterwards")
            self.mutating.add(m)
        self._plan: list[Step] | None = None
        self._sizes: dict[int, dict[fx.Node, Any]] = {}
        self.fold, self.channels_last = fold, channels_last
        self._alias: set[fx.Node] = set()  # those BatchNorms: their value is the convolution's
        self._windows: set[fx.Node] = set()  # convolutions and pooling (their changed values are fresh tensors)
        self._convs: dict[fx.Node, Window] = {}  # convolution -> its Window (with a folded BatchNorm)
        self._skipped: dict[fx.Node, tuple[int, int]] = {}  # zero padding read only by a convolution

    # ---- the clean run ----------------------------------------------------------------------------------------
    def _call(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node in self.mutating:  # run out of place: the mutated value is never read again (checked above)
            args = (args[0].clone(), *args[1:])
        if node.op == "call_module":
            return self.modules[str(node.target)](*args, **kwargs)
        if node.op == "call_function":
            fn = node.target
            assert callable(fn)  # a function call's target is the function
            return fn(*args, **kwargs)
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)

    def clean(self, x: T) -> Clean:
        """Run one image ``x`` (1, C, H, W) keeping every node's output."""
        values: dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "placeholder":
                values[n] = x
            elif n.op == "get_attr":
                values[n] = _fetch(self.gm, str(n.target))
            elif n.op == "output":
                values[n] = fx.node.map_arg(n.args[0], lambda a: values[a])
            else:
                args = fx.node.map_arg(n.args, lambda a: values[a])
                kwargs = fx.node.map_arg(n.kwargs, lambda a: values[a])
                values[n] = self._call(n, args, kwargs)
        logits = values[self.output]
        if self.channels_last:  # the changed copies run in channels-last layout (faster convolutions on a CPU)
            for n in self.dependent:
                if _is_4d(values.get(n)) and n.op != "output":
                    values[n] = values[n].contiguous(memory_format=torch.channels_last)
        if not isinstance(logits, torch.Tensor):
            raise Untraceable(f"the model returns a {type(logits).__name__}, not a tensor of logits")
        if self._plan is None:
            self._plan = self._make_plan(values)
        return Clean(values, logits)

    def _make_plan(self, values: dict[fx.Node, Any]) -> list[Step]:
        """Each input-dependent node with its rule (see :mod:`cnnlens.models._regions`) and full multiply-adds."""
        plan: list[Step] = []
        self.full_macs = 0

        def const(a: Any) -> Any:
            return values.get(a) if isinstance(a, fx.Node) and a not in self.dependent else None

        for n in self.nodes:
            if n not in self.dependent or n.op in ("placeholder", "output"):
                continue
            v = values[n]
            module = self.modules.get(str(n.target)) if n.op == "call_module" else None
            if not _tensorish(v):
                if n.op == "call_method" and n.target in ("item", "tolist"):
                    raise Untraceable(f"{n.name} reads tensor values into Python ({n.target}), which change per copy")
                plan.append((n, "size", (None, 0)))
                continue
            spatial = [a for a in n.all_input_nodes if a in self.dependent and _is_map(values[a], v)]
            others = [a for a in n.all_input_nodes if a in self.dependent and a not in spatial]
            kind, macs = "generic", whole_macs(n, module, v, values)
            extra: Extra = None
            arg = n.args[0] if n.args else None
            dep = [a for a in n.all_input_nodes if a in self.dependent]
            # the node's one input-dependent operand, when that is its first argument and both are 4-d maps
            first = arg if isinstance(arg, fx.Node) and dep == [arg] and _is_4d(values[arg]) and _is_4d(v) else None
            window = window_of(n, module, const) if first is not None else None
            pad = pad_of(n, module) if first is not None else None
            if n in self._alias:
                kind, extra, macs = "alias", None, 0
            elif first is not None and window is not None:
                kind, extra, macs = "window", window, v.numel() * window.macs_per_output
                self._windows.add(n)
                bn = next_batchnorm(n, self.modules) if self.fold and window.conv is not None else None
                if bn is not None:
                    extra = window.folded(*bn[1])
                    self._alias.add(bn[0])
                if window.conv is not None:
                    self._convs[n] = extra
                    sym = symmetric_zero_pad(first, self.modules.get(str(first.target)))
                    if sym is not None and list(first.users) == [n] and window.padding == (0, 0):
                        self._skipped[first] = sym
            elif pad is not None:
                kind, extra = "pad", pad
            elif first is not None and is_pointwise(n, module) and v.shape == values[first].shape:
                kind, extra = "pointwise", self._owned(first, n) and in_place(n, module)
            elif spatial and _is_map(v, v) and is_binary(n):
                kind, extra = "binary", others
            elif spatial and _is_map(v, v) and cat_inputs(n) is not None and not others:
                kind = "cat"
            self.full_macs += macs
            plan.append((n, kind, (extra, macs)))
        return plan

    def _owned(self, a: fx.Node, reader: fx.Node) -> bool:
        """Whether ``reader`` is the only reader of ``a``'s changed value and that value is a fresh tensor (a
        convolution's or pooling's output, also through a folded BatchNorm): an activation may then overwrite it."""
        if list(a.users) != [reader]:
            return False
        return a in self._alias or a in self._windows

    # ---- a batch of changed copies ----------------------------------------------------------------------------
    def run(self, clean: Clean, patch: T, y: T, x: T, region: T, field: float | None = None) -> tuple[T, float]:
        """Logits (N, classes) of the clean image changed to ``patch`` (N, C, h, w) at rows ``y`` / columns ``x``
        (N,), the change lying inside ``region`` (N, 4: top, bottom, left, right, pixels; empty rows allowed), and
        the cost: multiply-adds spent per row as a fraction of a full forward pass's (of its convolutions and
        linear layers). ``field``: the projective-field threshold of the approximate mode (``None``: exact)."""
        assert self._plan is not None
        n = patch.shape[0]
        if self.channels_last:
            patch = patch.contiguous(memory_format=torch.channels_last)
        env: dict[fx.Node, Any] = {self.input: Patch(patch, y, x, region)}
        sizes = self._sizes_for(clean, n)
        macs = 0
        for node, kind, (extra, full) in self._plan:
            if kind == "size":
                continue
            if kind == "alias":  # a BatchNorm folded into the convolution before it
                if _operand(node) in env:
                    env[node] = env[_operand(node)]
                continue
            changed = [a for a in node.all_input_nodes if a in env]
            if not changed:
                continue
            if kind == "pad" and node in self._skipped and isinstance(env[_operand(node)], Full):
                env[node] = Unpadded(env[_operand(node)].value, self._skipped[node])
                continue
            if kind == "pointwise" and callable(extra) and isinstance(env[_operand(node)], Full):
                env[node] = Full(extra(env[_operand(node)].value))
                continue
            if kind == "generic" or any(isinstance(env[a], Full) for a in changed):
                env[node] = Full(self._generic(node, clean, env, sizes, n, kind))
                macs += n * full
                continue
            if kind == "binary" and isinstance(extra, list) and any(a in env for a in extra):
                env[node] = Full(self._generic(node, clean, env, sizes, n))
                continue
            out = self._local(node, kind, extra, clean, env, field)
            if isinstance(out, Full):  # the change reaches the whole map: run the operation as it is
                env[node] = Full(self._generic(node, clean, env, sizes, n, kind))
                macs += n * full
            elif out is not None:
                env[node] = out
                if isinstance(extra, Window):
                    macs += out.value.numel() * extra.macs_per_output
        result = self.output.args[0]
        if not isinstance(result, fx.Node) or result not in self.dependent:
            raise Untraceable("the model's output does not come from one node computed from the input")
        logits = self._arg(result, clean, env, sizes, n)
        return logits, macs / (n * self.full_macs) if self.full_macs else 1.0

    def _local(self, node: fx.Node, kind: str, extra: Any, clean: Clean, env: dict, field: float | None) -> Any:
        v = clean.values[node]
        size = (v.shape[2], v.shape[3])
        if kind == "pad":
            p = env[node.args[0]]
            shift = torch.tensor([extra[0], extra[0], extra[1], extra[1]], device=p.region.device)
            return Patch(p.value, p.y + extra[0], p.x + extra[1], p.region + shift)
        if kind == "pointwise":
            p = env[node.args[0]]
            if extra:
                return Patch(extra(p.value), p.y, p.x, p.region)
            args = (p.value, *fx.node.map_arg(node.args[1:], lambda a: clean.values[a]))
            kwargs = fx.node.map_arg(node.kwargs, lambda a: clean.values[a])
            return Patch(self._call(node, args, kwargs), p.y, p.x, p.region)
        if kind == "window":
            p = env[node.args[0]]
            region = _capped(extra.outputs(p.region, size), size, field)
            box = _box(region, size)
            if box is None or box[1] == size:
                return None if box is None else Full(None)
            (y, x), shape = box
            (ty, tx), tshape = extra.tile((y, x), shape)
            tile = _read(clean.values[_operand(node)], p, ty, tx, tshape, extra.fill)
            return Patch(extra.run(tile), y, x, region)
        # binary and cat: the union of the changed operands' regions
        maps = [a for a in node.all_input_nodes if isinstance(env.get(a), Patch)]
        region = _union([env[a].region for a in maps])
        box = _box(region, size)
        if box is None or box[1] == size:
            return None if box is None else Full(None)
        (y, x), shape = box

        def read(a: fx.Node) -> Any:
            if a in env:
                return _read(clean.values[a], env[a], y, x, shape, 0.0)
            src = clean.values[a]
            return _read(src, None, y, x, shape, 0.0) if _is_map(src, v) else src

        args = fx.node.map_arg(node.args, read)
        kwargs = fx.node.map_arg(node.kwargs, read)
        return Patch(self._call(node, args, kwargs), y, x, region)

    def _arg(self, a: fx.Node, clean: Clean, env: dict, sizes: dict, n: int) -> Any:
        """Argument ``a`` of an operation on whole tensors, one row per copy."""
        if a not in self.dependent:
            return clean.values[a]
        if a in sizes:
            return sizes[a]
        if a in env:
            e = env[a]
            if isinstance(e, Full):
                return e.value
            v = clean.values[a]
            return _read(v, e, e.y.new_zeros(n), e.x.new_zeros(n), (v.shape[2], v.shape[3]), 0.0)
        return _expand(clean.values[a], n)

    def _generic(self, node: fx.Node, clean: Clean, env: dict, sizes: dict, n: int, kind: str = "generic") -> Any:
        if node in self._convs:
            a = _operand(node)
            pad = env[a].pad if isinstance(env.get(a), Unpadded) else None
            return self._convs[node].full(self._arg(a, clean, env, sizes, n), pad)

        def arg(a: fx.Node) -> Any:
            v = self._arg(a, clean, env, sizes, n)
            # operations outside the known rules get the layout the model's own code expects (``view`` and such)
            return v.contiguous() if kind == "generic" and isinstance(v, torch.Tensor) else v

        args = fx.node.map_arg(node.args, arg)
        kwargs = fx.node.map_arg(node.kwargs, arg)
        return self._call(node, args, kwargs)

    def _sizes_for(self, clean: Clean, n: int) -> dict[fx.Node, Any]:
        """Sizes and other non-tensor values for a batch of ``n`` rows (they depend on shapes only)."""
        if n not in self._sizes:
            sizes: dict[fx.Node, Any] = {}
            for node, kind, _ in self._plan or []:
                if kind == "size":
                    sizes[node] = self._generic(node, clean, {}, sizes, n)
            self._sizes[n] = sizes
        return self._sizes[n]


def _operand(node: fx.Node) -> fx.Node:
    """``node``'s first argument: the changed map that its local rule reads (a node for those kinds)."""
    a = node.args[0]
    assert isinstance(a, fx.Node), node.name
    return a


def _fetch(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _closure(start: fx.Node) -> set[fx.Node]:
    seen, todo = {start}, [start]
    while todo:
        for u in todo.pop().users:
            if u not in seen:
                seen.add(u)
                todo.append(u)
    return seen


def _is_4d(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() == 4


def _is_map(v: Any, out: Any) -> bool:
    """Whether ``v`` is a 4-d map with the height and width of ``out`` (larger than 1 x 1)."""
    return (
        isinstance(v, torch.Tensor)
        and isinstance(out, torch.Tensor)
        and v.dim() == 4
        and out.dim() == 4
        and v.shape[2:] == out.shape[2:]
        and v.shape[2] * v.shape[3] > 1
    )
