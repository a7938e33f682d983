"""Tracing a model with ``torch.fx`` for :mod:`cnnlens.models._cut` and :mod:`cnnlens.models._incremental`.

A traced graph is trusted only when it repeats what the model does: no TorchScript inside, no forward hooks on the
traced modules (a graph would not run them), and a forward code that leaves the traced modules' attributes as they
were (tracing runs that code once; whatever it changed is put back).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..core.model_guard import frozen
from ._graph import Untraceable


def trace(model: nn.Module, layer: str | None = None) -> fx.Graph:
    """``model``'s graph, traced in eval mode: down to the calls of standard modules, or (``layer``: a dotted name)
    through the forward code of the root and of the modules that contain the layer only, every other module called.

    Raises :class:`~cnnlens.models._graph.Untraceable` with the reason where the graph could not be trusted."""
    _refuse_scripted(model)
    if layer is None:
        return _trace(model, fx.Tracer(), list(model.modules()))
    tracer = _Tracer(model, layer)
    return _trace(model, tracer, [m for m in model.modules() if id(m) in tracer.ancestors])


def trace_calls(model: nn.Module) -> tuple[fx.Graph, list[tuple[str, fx.Node | None]]]:
    """``(graph, calls)``: ``model``'s graph traced as :func:`trace` does without a layer, and every module call
    made while tracing (the root's excepted), in the order the calls returned: ``(dotted name, the node of its
    output)``; a call whose output is not one value (a tuple, a dict) has node ``None``. Same errors as
    :func:`trace`."""
    _refuse_scripted(model)
    tracer = _Recorder()
    return _trace(model, tracer, list(model.modules())), tracer.calls


class _Recorder(fx.Tracer):
    """A tracer that records each module call and the node of its output."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, fx.Node | None]] = []

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        out = super().call_module(m, forward, args, kwargs)
        self.calls.append((self.path_of_module(m), out.node if isinstance(out, fx.Proxy) else None))
        return out


def _refuse_scripted(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule) or any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise Untraceable("TorchScript code cannot be traced by torch.fx")


def _trace(model: nn.Module, tracer: fx.Tracer, traced: list[nn.Module]) -> fx.Graph:
    hooked = [m for m in traced if _hooks(m)]
    if hooked or _hooks(None):
        where = f"{type(hooked[0]).__name__} has" if hooked else "global module hooks are"
        raise Untraceable(f"{where} forward hooks, which a traced graph would not run")
    before = _attributes(traced)
    try:
        with frozen(model):
            graph = tracer.trace(model)
    except Exception as err:  # noqa: BLE001 - any tracing failure means: do without a traced graph
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise Untraceable(f"torch.fx cannot trace the model ({type(err).__name__}: {first[:200]})") from None
    finally:
        changed = _restore(traced, before)
    if changed:
        raise Untraceable(
            f"the model's forward code changes {changed} while it runs (a traced graph would not repeat that)"
        )
    return graph


class _Tracer(fx.Tracer):
    """Traces the forward code of the root and of the modules that contain the layer; calls every other module."""

    def __init__(self, root: nn.Module, name: str) -> None:
        super().__init__()
        parts = name.split(".")
        self.layer = root.get_submodule(name)
        self.ancestors = {id(root.get_submodule(".".join(parts[:i]))) for i in range(len(parts))}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is self.layer or id(m) not in self.ancestors


def _hooks(m: nn.Module | None) -> bool:
    """Whether module ``m`` (``None``: every module, through the global registries) has forward hooks."""
    from torch.nn.modules import module as registry

    if m is None:
        return bool(registry._global_forward_hooks or registry._global_forward_pre_hooks)
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _attributes(modules: list[nn.Module]) -> list[tuple[nn.Module, dict, dict]]:
    """Each module's attributes, and a shallow copy of those that are lists, dicts or sets."""
    out = []
    for m in modules:
        attrs = dict(vars(m))
        out.append((m, attrs, {k: copy.copy(v) for k, v in attrs.items() if isinstance(v, (list, dict, set))}))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(a[k] is b[k] for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
    return a == b


def _restore(modules: list[nn.Module], before: list[tuple[nn.Module, dict, dict]]) -> str:
    """Put back every attribute the traced forward code changed; name the first one ("" when none)."""
    changed = ""
    for m, attrs, contents in before:
        now = vars(m)
        for k in [k for k in now if k not in attrs]:
            changed = changed or f"{type(m).__name__}.{k}"
            del now[k]
        for k, v in attrs.items():
            if now.get(k) is not v:
                changed = changed or f"{type(m).__name__}.{k}"
                now[k] = v
            if k in contents and not _same(v, contents[k]):
                changed = changed or f"{type(m).__name__}.{k}"
                v.clear()
                (v.update if isinstance(v, (dict, set)) else v.extend)(contents[k])
    return changed
