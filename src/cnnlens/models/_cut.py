"""A model cut at one layer: a head (inputs -> the layer's output) and a tail (that output -> the model's output).

Methods that vary a layer's activation (layer integrated gradients, layer feature ablation, Ablation-CAM, concept
importance) run the head once per image and then only the tail for every variation; propagation rules use the
traced graph. Build a cut with :func:`cut_at`; run it inside ``cnnlens.core.model_guard.frozen(model)`` (eval mode, as the
graph was traced).

Two ways to cut, the same numbers:

* **traced** (``torch.fx``): the forward code of the root and of the modules that contain the layer is traced;
  every other module is called as it is (its own code, hooks and side effects run as usual). The graph is split
  at the layer's node: the head computes everything that does not depend on the layer's output, once; the tail
  the rest. Values that jump across the cut (skip connections, the batch size read from the input) are handed to
  the tail in a :class:`State`: tensors computed from the input travel row by row, sizes are recomputed in the
  tail, constants are passed as they are. In-place operations keep their order (a mutated value's readers stay
  on the right side of the mutation), and a tail that mutates the layer's output or a carried value gets a copy.
* **hooked** (the fallback where the model does not trace, e.g. Python control flow on tensor values): the head is
  a full forward pass that captures the layer's output; the tail is a full forward pass on the same inputs with
  the layer's output replaced. Slower (every tail row runs the whole model), never different.

``Cut.path`` says which one runs and ``Cut.reason`` why the traced one was given up.

Tracing (and checking a traced cut against the model) is done once per model state: the traced parts are kept
for a model while it lives (held weakly: a cut never keeps a model alive) and used again only while the model
has the same modules, parameter and buffer tensors (same objects, unchanged in place: ``Tensor._version``),
forward hooks and attributes of the traced modules; any change traces again. (A change made through
``tensor.data``, which moves no version counter, keeps the traced parts: they read the model's weights live.)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import capture
from ._graph import Split, Untraceable, acts_per_unit
from ._layers import get_layer
from ._state import state_fingerprint
from ._tracing import trace

T = torch.Tensor


@dataclass(frozen=True)
class State:
    """What the tail needs besides the layer's output: values computed before the cut, in the tail's order.

    ``kinds[i]`` says how value ``i`` follows the rows: ``"rows"`` (a tensor computed from the input, one row per
    input row), ``"shape"`` (such a tensor of which the tail reads only the size: every row is the first one, an
    expanded view without a copy) or ``"const"`` (shared by every row).
    """

    values: tuple[Any, ...] = ()
    kinds: tuple[str, ...] = ()

    def _map(self, rows: Callable[[T], T], n: int) -> State:
        out = []
        for v, k in zip(self.values, self.kinds, strict=True):
            out.append(rows(v) if k == "rows" else v[:1].expand(n, *v.shape[1:]) if k == "shape" else v)
        return State(tuple(out), self.kinds)

    def take(self, index: T) -> State:
        """The rows ``index`` (rows may repeat)."""
        return self._map(lambda v: v[index], len(index))

    def __getitem__(self, sl: slice) -> State:
        n = len(range(*sl.indices(self.rows)))
        return self._map(lambda v: v[sl], n)

    @property
    def rows(self) -> int:
        return next((v.shape[0] for v, k in zip(self.values, self.kinds, strict=True) if k != "const"), 0)

    def lerp(self, end: State, t: T) -> State:
        """Row by row ``self + t (end - self)`` (``t``: one weight per row)."""
        out = []
        for a, b, k in zip(self.values, end.values, self.kinds, strict=True):
            out.append(a + t.view(-1, *[1] * (a.dim() - 1)).to(a.dtype) * (b - a) if k == "rows" else a)
        return State(tuple(out), self.kinds)

    @staticmethod
    def cat(states: list[State]) -> State:
        """Rows of several states one after the other."""
        first = states[0]
        values = [
            torch.cat([s.values[i] for s in states]) if k != "const" else v
            for i, (v, k) in enumerate(zip(first.values, first.kinds, strict=True))
        ]
        return State(tuple(values), first.kinds)


class Cut:
    """``model`` split at ``layer``: ``tail(*head(x)) == model(x)``; ``inner(x)`` is the layer's output alone.

    Build it with :func:`cut_at`. ``path`` is ``"traced"`` or ``"hooked"``, ``reason`` says why tracing was
    given up (``None`` when it was not). ``graph`` is the model's traced graph (``None`` on the hooked path).
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module) -> None:
        self.model = model
        self.layer = get_layer(model, layer)
        names = {id(m): n for n, m in model.named_modules()}
        self.name = names.get(id(self.layer), str(layer))
        self.reason: str | None = None
        self.graph: fx.Graph | None = None
        self._head: Callable | None = None
        self._tail: Callable | None = None
        self._inner: Callable | None = None
        self._traced: _Traced | None = None
        found = _cached(model, self.name, self.layer)
        if found is None:
            try:
                found = self._trace()
            except Untraceable as err:
                found = str(err)
            _store(model, self.name, self.layer, found)
        if isinstance(found, str):
            self.fall_back(found)
        else:
            self._traced, self.graph, self._kinds = found, found.graph, found.kinds
            self._head, self._tail, self._inner = found.head, found.tail, found.inner

    @property
    def path(self) -> str:
        return "hooked" if self.reason is not None else "traced"

    def fall_back(self, reason: str) -> None:
        """Use full forward passes with the layer's output captured or replaced from now on."""
        self.reason = reason
        self._head = self._tail = self._inner = None
        self._traced = None

    @property
    def per_unit(self) -> bool:
        """Whether the tail is ``sum over units of phi_u(a_u)`` plus a constant (traced path only; see
        ``acts_per_unit``): then every path between two layer outputs gives each unit the same integral."""
        if self._traced is None:
            return False
        if self._traced.per_unit is None:
            modules = dict(self.model.named_modules())
            self._traced.per_unit = acts_per_unit(self._traced.tail.graph, modules, self._traced.kinds)
        return self._traced.per_unit

    def checked(self, check: str, x: T) -> bool:
        """Whether the traced path passed ``check`` (e.g. ``"logits"``) for inputs like ``x`` (their row shape,
        dtype and device) since the model last changed."""
        return self._traced is not None and (check, *_signature(x)) in self._traced.checked

    def passed(self, check: str, x: T) -> None:
        """Record that the traced path passed ``check`` for inputs like ``x`` (see :meth:`checked`)."""
        if self._traced is not None:
            self._traced.checked.add((check, *_signature(x)))

    # ---- the three functions --------------------------------------------------------------------------------
    def head(self, x: T) -> tuple[T, State]:
        """``(the layer's output, what the tail needs)`` for input rows ``x``."""
        if self._head is None:
            with capture([self.layer], names=[self.name]) as outs:
                self.model(x)
            return outs[0], State((x,), ("rows",))
        out = self._head(x)
        activation, values = out[0], tuple(out[1:])
        for v, k in zip(values, self._kinds, strict=True):
            if k != "const" and not (isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == x.shape[0]):
                raise Untraceable(
                    f"a value crossing the cut is not a tensor with one row per input ({type(v).__name__})"
                )
        return activation, State(values, self._kinds)

    def tail(self, activation: T, state: State) -> Any:
        """The model's output when the layer outputs ``activation`` (rows aligned with ``state``)."""
        if self._tail is None:
            (x,) = state.values
            with _replaced(self.layer, self.name, activation):
                return self.model(x)
        return self._tail(activation, *state.values)

    def inner(self, x: T) -> T:
        """The layer's output for input rows ``x`` (only the layers it depends on run on the traced path)."""
        if self._inner is None:
            with capture([self.layer], names=[self.name]) as outs:
                self.model(x)
            return outs[0]
        return self._inner(x)

    # ---- tracing and splitting ------------------------------------------------------------------------------
    def _trace(self) -> _Traced:
        graph = trace(self.model, self.name)
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == self.name]
        if len(nodes) > 1:
            raise CnnlensError(
                f"layer {self.name} runs {len(nodes)} times in one forward pass; choose a layer that runs exactly "
                f"once (a module reused in several places has no single output)"
            )
        if not nodes:
            raise Untraceable(f"the traced graph does not call {self.name} as a module")
        split = Split(graph, nodes[0], {n: m for n, m in self.model.named_modules()})
        head, tail, inner = (
            fx.GraphModule(self.model, g) for g in (split.head_graph(), split.tail_graph(), split.inner_graph())
        )
        return _Traced(graph, tuple(split.kinds), head, tail, inner)


def cut_at(model: nn.Module, layer: str | nn.Module) -> Cut:
    """Cut ``model`` at ``layer`` (a dotted name or one of its modules); see the module docstring.

    Raises ``CnnlensError`` for a layer that is not in the model or that runs more than once per forward pass.
    """
    return Cut(model, layer)


@dataclass
class _Traced:
    """A traced cut's parts (they refer to the model's submodules, never to the model itself)."""

    graph: fx.Graph
    kinds: tuple[str, ...]
    head: fx.GraphModule
    tail: fx.GraphModule
    inner: fx.GraphModule
    checked: set[tuple] = field(default_factory=set)
    per_unit: bool | None = None


# model -> {layer name: (fingerprint, traced parts or why tracing failed)}; weak keys: a cut never keeps a model alive
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(x: T) -> tuple:
    return tuple(x.shape[1:]), x.dtype, x.device


def _fingerprint(model: nn.Module, layer: nn.Module, name: str) -> tuple:
    """What a traced cut depends on: the modules (which objects, where), every parameter and buffer (which tensor,
    its in-place version, storage, dtype), the hooks, and the attributes of the modules whose code was traced."""
    parts = name.split(".")
    ancestors = {id(model.get_submodule(".".join(parts[:i]))) for i in range(len(parts))}
    return (id(layer), *state_fingerprint(model, ancestors))


def _cached(model: nn.Module, name: str, layer: nn.Module) -> _Traced | str | None:
    if isinstance(model, torch.jit.ScriptModule):  # never traced: nothing to keep
        return None
    try:
        fingerprint, found = _CACHE.get(model, {}).get(name, (None, None))
    except TypeError:  # a model that cannot be weakly referenced is never cached
        return None
    return found if found is not None and fingerprint == _fingerprint(model, layer, name) else None


def _store(model: nn.Module, name: str, layer: nn.Module, found: _Traced | str) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        return
    with suppress(TypeError):  # a model that cannot be weakly referenced is never cached
        _CACHE.setdefault(model, {})[name] = (_fingerprint(model, layer, name), found)


@contextmanager
def _replaced(layer: nn.Module, name: str, activation: T) -> Iterator[None]:
    """Inside: ``layer`` outputs ``activation`` (a copy, so that in-place operations after it cannot change it)."""
    calls = []

    def hook(_m: nn.Module, _args: tuple, out: Any) -> T:
        calls.append(1)
        if not isinstance(out, torch.Tensor) or out.shape != activation.shape:
            shape = getattr(out, "shape", type(out).__name__)
            raise CnnlensError(
                f"layer {name} outputs {shape}; the activation given has shape {tuple(activation.shape)}"
            )
        return activation.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
    if len(calls) != 1:
        raise CnnlensError(
            f"layer {name} ran {len(calls)} times in one forward pass; choose a layer that runs exactly once"
        )
