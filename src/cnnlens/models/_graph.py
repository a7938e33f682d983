"""Splitting a traced graph at one node: the head (all that does not depend on it) and the tail (the rest).

Used by :mod:`cnnlens.models._cut`. In-place operations order the readers of the value they change around
themselves (a reader before the change stays before it, one after stays after), so a split never moves a read
across a mutation; values the tail changes in place reach it as copies.
"""

from __future__ import annotations

import inspect
import math
import operator

import torch.fx as fx
from torch import nn

# Methods that return sizes and flags, not tensors: such values are recomputed in the tail, never carried.
_SIZE_METHODS = {"size", "dim", "numel", "ndimension", "nelement", "element_size", "stride", "get_device", "item"}
_SIZE_METHODS |= {"tolist", "is_contiguous", "is_floating_point", "is_complex", "data_ptr", "__len__"}
_SIZE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "layout", "is_sparse"}
_PLAIN_MODULES = {"operator", "_operator", "builtins", "math"}


class Untraceable(Exception):
    """The traced path is not possible (or not trustworthy) for this model."""


def _mutated(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The node whose value ``node`` changes in place, if it does."""
    first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):
        return out
    if node.op == "call_method":
        name = str(node.target)
        return first if name.endswith("_") and not name.startswith("_") else None
    if node.op == "call_module":
        return first if getattr(modules.get(str(node.target)), "inplace", False) is True else None
    if node.op != "call_function":
        return None
    if node.target is operator.setitem:
        return first
    name = getattr(node.target, "__name__", "")
    if name.endswith("_") and not name.startswith("_"):
        return first
    return first if _inplace_flag(node) else None


def _inplace_flag(node: fx.Node) -> bool:
    if node.kwargs.get("inplace") is True:
        return True
    if not callable(node.target):  # a method's or module's name
        return False
    try:
        params = list(inspect.signature(node.target).parameters)
    except (TypeError, ValueError):
        return False
    return (
        "inplace" in params and len(node.args) > params.index("inplace") and node.args[params.index("inplace")] is True
    )


class Split:
    """The graph's nodes divided at the layer's node ``cut``: head (all that does not depend on it) and tail."""

    def __init__(self, graph: fx.Graph, cut: fx.Node, modules: dict[str, nn.Module]) -> None:
        self.graph, self.cut = graph, cut
        nodes = list(graph.nodes)
        deps, users, self.mutates = dependencies(nodes, modules)
        tail = _closure([cut], users) - {cut}
        tail |= {n for n in nodes if n.op == "output"}
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if cut in tail or any(p in tail for p in placeholders):
            raise Untraceable("the layer's output feeds back into what computes it")
        self.head = [n for n in nodes if n not in tail and n.op != "output"]
        # sizes and other non-tensor values crossing the cut are recomputed in the tail (and kept in the head)
        while True:
            crossing = self._crossing(nodes, tail)
            recompute = {n for n in crossing if n.op != "placeholder" and not _is_tensor(n)}
            if not recompute:
                break
            tail |= recompute
        self.nodes, self.tail, self.crossing = nodes, tail, crossing
        source = placeholders[0] if placeholders else None
        from_input = _closure([source], {n: set(n.users) for n in nodes}) if source is not None else set()
        self.kinds = [
            "const"
            if n not in from_input
            else "shape"
            if all(not _is_tensor(u) for u in n.users if u in tail)
            else "rows"
            for n in crossing
        ]
        self.inner = _closure([cut], deps)

    def _crossing(self, nodes: list[fx.Node], tail: set[fx.Node]) -> list[fx.Node]:
        needed = {d for n in tail for d in n.all_input_nodes if d not in tail and d is not self.cut}
        return [n for n in nodes if n in needed and n.op != "get_attr"]

    def head_graph(self) -> fx.Graph:
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for n in self.head:
            env[n] = g.node_copy(n, lambda a: env[a])
        g.output((env[self.cut], *[env[c] for c in self.crossing]))
        return g

    def inner_graph(self) -> fx.Graph:
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for n in self.nodes:
            if n in self.inner:
                env[n] = g.node_copy(n, lambda a: env[a])
        g.output(env[self.cut])
        return g

    def tail_graph(self) -> fx.Graph:
        g = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        changed = {a for m, a in self.mutates.items() if m in self.tail}
        for i, n in enumerate([self.cut, *self.crossing]):
            p = g.placeholder("activation" if i == 0 else f"carried_{i}")
            env[n] = g.call_method("clone", (p,)) if n in changed else p
        for n in self.nodes:
            if n.op == "get_attr" and any(u in self.tail for u in n.users):
                env[n] = g.node_copy(n)
            elif n in self.tail:
                env[n] = g.node_copy(n, lambda a: env[a])
        return g


def dependencies(
    nodes: list[fx.Node], modules: dict[str, nn.Module]
) -> tuple[dict[fx.Node, set[fx.Node]], dict[fx.Node, set[fx.Node]], dict[fx.Node, fx.Node]]:
    """``(deps, users, mutates)`` of a graph's ``nodes`` (in graph order): what each node needs and what needs it,
    with an in-place change ordering the mutated value's other readers around it (a reader after the change
    needs it, a reader before it comes first), and which value each in-place node changes."""
    order = {n: i for i, n in enumerate(nodes)}
    deps: dict[fx.Node, set[fx.Node]] = {n: set(n.all_input_nodes) for n in nodes}
    mutates: dict[fx.Node, fx.Node] = {}
    for m in nodes:
        a = _mutated(m, modules)
        if a is None:
            continue
        mutates[m] = a
        for u in a.users:
            if u is not m:
                (deps[u].add(m) if order[u] > order[m] else deps[m].add(u))
    users: dict[fx.Node, set[fx.Node]] = {n: set() for n in nodes}
    for n, ds in deps.items():
        for d in ds:
            users[d].add(n)
    return deps, users, mutates


def dominators(graph: fx.Graph, modules: dict[str, nn.Module]) -> list[fx.Node]:
    """The tensor values every path from the model's input (the first placeholder) to its output passes through,
    in graph order: the dominators of the output in the graph of tensor values (sizes read from a tensor are not
    a path; an in-place change is one, see :func:`dependencies`).

    In a graph in topological order, a value ``v`` on a path from input to output is avoided by some path exactly
    when an edge between two such values jumps over it (starts before ``v`` and ends after it)."""
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if not placeholders:
        return []
    deps, users, _ = dependencies(nodes, modules)
    seen: dict = {}
    tensors = {n for n in nodes if n.op in ("placeholder", "output") or _is_tensor(n, seen)}
    down = _closure([placeholders[0]], {n: users[n] & tensors for n in nodes})
    sink = [n for n in nodes if n.op == "output"]
    up = _closure(sink, {n: deps[n] & tensors for n in nodes})
    live = [n for n in nodes if n in down and n in up]
    pos = {n: i for i, n in enumerate(live)}
    if not sink or sink[0] not in pos:
        return []
    out, reach = [], -1
    for n in live:
        if reach <= pos[n]:
            out.append(n)
        reach = max([reach, *(pos[u] for u in users[n] if u in pos)])
    return out


def _closure(start: list[fx.Node], edges: dict[fx.Node, set[fx.Node]]) -> set[fx.Node]:
    seen, todo = set(start), list(start)
    while todo:
        for m in edges[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _is_tensor(node: fx.Node, seen: dict | None = None) -> bool:
    """Whether a node's value is a tensor, read from what computes it (sizes, shapes and their arithmetic are not)."""
    seen = {} if seen is None else seen
    if node in seen:
        return seen[node]
    seen[node] = True
    result = True
    if node.op == "call_method":
        result = str(node.target) not in _SIZE_METHODS
    elif node.op == "call_function":
        target = node.target
        if target is getattr:
            result = node.args[1] not in _SIZE_ATTRIBUTES
        elif getattr(target, "__module__", None) in _PLAIN_MODULES or target in (len, int, float, math.prod):
            args = [a for a in node.all_input_nodes]
            result = any(_is_tensor(a, seen) for a in args)
    seen[node] = result
    return result


# ---- whether a tail acts on each unit of the layer separately ------------------------------------------------------
_PER_UNIT = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.Softplus,
    nn.Hardswish, nn.Hardsigmoid, nn.Mish,
)  # fmt: skip
_KEEP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)  # identities in eval mode
_PER_UNIT_NAMES = {"relu", "relu_", "relu6", "hardtanh", "sigmoid", "tanh", "silu", "gelu", "elu", "leaky_relu"}
_PER_UNIT_NAMES |= {"softplus", "hardswish", "hardsigmoid", "mish", "clamp", "clamp_", "clip"}
_AFFINE_MODULES = (nn.Linear, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Flatten)
_AFFINE_METHODS = {"view", "reshape", "flatten", "contiguous", "clone", "squeeze", "unsqueeze", "mean", "sum"}
_AFFINE_FUNCTIONS = {"flatten", "reshape", "squeeze", "unsqueeze", "mean", "sum"}
_ADD = {operator.add, operator.sub}
_SCALE = {operator.mul, operator.truediv}


def acts_per_unit(tail: fx.Graph, modules: dict[str, nn.Module], kinds: tuple[str, ...]) -> bool:
    """Whether the tail's output is ``sum over units u of phi_u(a_u)`` plus a constant (``a``: the layer's output):
    functions of one unit each (eval-mode BatchNorm, activations), then affine maps only (pooling, linear layers,
    reshapes), and no value carried across the cut that varies with the input (a skip connection). Then the
    gradient of the tail at unit ``u`` depends on ``a_u`` alone, and an integral of it along any path from ``a0``
    to ``a1`` is ``phi_u(a1_u) - phi_u(a0_u)``. Conservative: anything else answers ``False``."""
    if any(k == "rows" for k in kinds):
        return False
    tag: dict[fx.Node, str] = {}  # "unit": a function of one unit each; "affine": affine in such; else constant
    for node in tail.nodes:
        deps = [tag[d] for d in node.all_input_nodes if d in tag]
        if node.op == "placeholder":
            if node.name == "activation":
                tag[node] = "unit"
            continue
        if node.op == "output" or not deps:
            continue
        kind = "affine" if "affine" in deps else "unit"
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", "")
        if isinstance(module, _KEEP) or (node.op == "call_method" and name in ("contiguous", "clone")):
            tag[node] = kind
        elif (
            isinstance(module, _PER_UNIT)
            or (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None)
            or (node.op in ("call_method", "call_function") and name in _PER_UNIT_NAMES)
        ):
            if kind != "unit" or len(node.all_input_nodes) != 1:
                return False
            tag[node] = "unit"
        elif isinstance(module, _AFFINE_MODULES) or (
            node.op in ("call_method", "call_function") and name in (_AFFINE_METHODS | _AFFINE_FUNCTIONS)
        ):
            if len(deps) != 1:
                return False
            tag[node] = "affine"
        elif node.op == "call_function" and (node.target in _ADD or (node.target in _SCALE and len(deps) == 1)):
            if node.target is operator.truediv and node.args[0] not in tag:
                return False  # a constant divided by a unit is not affine in it
            tag[node] = "affine"
        else:
            return False
    return True
