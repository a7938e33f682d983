"""Where attributions land: a run seen from a layer (:meth:`LayerAxis.at_layer`), the model cut there.

A mixin of :class:`cnnlens.engine._context.Context`: the view it returns is a Context whose inputs are the
layer's activations (the head ran once per image) and whose model is the tail, so every method written for
inputs runs on a layer unchanged. Also the layer's output for any input rows (``layer_activations``,
``project``), with the traced path checked against the model before it is trusted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import capture
from ..models import Cut, State

if TYPE_CHECKING:
    from ._context import Context, Rows

T = torch.Tensor


class LayerAxis:
    """The layer methods of a Context (see the module docstring)."""

    def at_layer(self: Any, layer: str | nn.Module) -> Context:
        """This run seen from ``layer``: a context whose inputs are the layer's activations for these inputs
        ``(B, ...)`` (the model's head runs once per image) and whose model is the rest of the network (the tail;
        values that cross the layer, e.g. skip connections, come from these inputs). ``ctx.at_layer(L).logits``
        equals ``ctx.logits``; when the traced cut disagrees with the model it is replaced by the hooked one."""
        if self.neuron is not None or self.layer is not None:
            raise CnnlensError("at_layer needs a context on the model's inputs that explains class scores")
        cut = self.shared.cut(layer)
        views = self.__dict__.setdefault("_views", {})
        if cut.name in views:
            return views[cut.name]
        try:
            view = self._view(cut)
        except Exception as err:  # noqa: BLE001 - the traced path failed: the hooked path (the same numbers) runs
            if cut.path == "hooked":
                raise
            cut.fall_back(f"the traced cut failed on these inputs ({type(err).__name__}: {err})")
            view = self._view(cut)
        self.info["cut"] = {"layer": cut.name, "path": cut.path, "reason": cut.reason}
        views[cut.name] = view
        return view

    def _view(self: Any, cut: Cut) -> Context:
        """The layer view. The traced path's logits are compared with the model's once per model state and input
        shape; once they agreed, the view's logits are the model's (no full forward pass)."""
        trusted = cut.checked("logits", self.inputs) and self._logits is None
        if not trusted and cut.path == "traced":
            _ = self.targets

        def head(sl: slice) -> tuple[T, State]:
            with torch.no_grad():
                out = cut.head(self.inputs[sl])
            self._count(sl.stop - sl.start, "head")
            return out

        parts = self.run(head, self.n)
        acts, state = torch.cat([p[0] for p in parts]), State.cat([p[1] for p in parts])
        view = self._child(acts)
        view.layer, view.state, view._parent = cut.name, state, self

        def tail(rows: T, owner: T, given: State | None) -> T:
            self.shared.rows["tail"] += rows.shape[0]
            return cut.tail(rows, given if given is not None else view.state.take(owner))  # type: ignore[union-attr]

        view._network = tail
        if cut.path == "hooked":  # the tail is the model itself
            view._logits = self.logits
        elif trusted:
            self._logits = view.logits
        else:
            expected, got = self.logits, view.logits
            tol = max(1e-4, 16 * torch.finfo(got.dtype).eps) * max(1.0, float(expected.abs().max()))
            if not torch.allclose(got, expected, rtol=0, atol=tol):
                raise CnnlensError(
                    f"the model's head and tail give logits {float((got - expected).abs().max()):.3g} off"
                )
            cut.passed("logits", self.inputs)
        view._targets = self.targets
        view._target_spec = self._target_spec if callable(self._target_spec) else view._targets
        return view

    def _check_inner(self: Any, cut: Cut) -> None:
        """The traced layer output of the first inputs must be the model's own; else the hooked path runs."""
        if cut.path != "traced" or id(cut) in self.shared.checked or cut.checked("inner", self.inputs):
            return
        self.shared.checked.add(id(cut))
        rows = self.inputs[:2]
        with torch.no_grad(), capture([cut.layer], names=[cut.name]) as outs:
            self.model(rows)
        self._count(rows.shape[0])
        try:
            with torch.no_grad():
                got = cut.inner(rows)
            self._count(rows.shape[0], "head")
            tol = max(1e-4, 16 * torch.finfo(got.dtype).eps) * max(1.0, float(outs[0].abs().max()))
            if not torch.allclose(got, outs[0], rtol=0, atol=tol):
                raise CnnlensError(f"{float((got - outs[0]).abs().max()):.3g} off")
            cut.passed("inner", self.inputs)
        except Exception as err:  # noqa: BLE001 - the traced path failed: the hooked path (the same numbers) runs
            cut.fall_back(f"the traced layer output differs from the model's ({type(err).__name__}: {err})")

    def layer_activations(self: Any, layer: str | nn.Module, rows: T | Rows) -> T:
        """The output of ``layer`` for input-space ``rows``, without gradients (only what it depends on runs)."""
        cut = self.shared.cut(layer)
        self._check_inner(cut)

        def step(sl: slice) -> T:
            with torch.no_grad():
                out = cut.inner(rows[sl])
            self._count(sl.stop - sl.start, "head")
            return out

        return torch.cat(self.run(step, rows.shape[0]))

    def project(self: Any, rows: T) -> tuple[T, State]:
        """``(activations, state)`` of input-space ``rows`` at this view's layer (the head only, no gradients)."""
        if self.layer is None:
            raise CnnlensError("project needs a layer view (ctx.at_layer(layer))")
        cut = self.shared.cut(self.layer)

        def head(sl: slice) -> tuple[T, State]:
            with torch.no_grad():
                out = cut.head(rows[sl])
            self._count(sl.stop - sl.start, "head")
            return out

        parts = self._parent.run(head, rows.shape[0])  # input rows: the batching of the model's inputs
        return torch.cat([p[0] for p in parts]), State.cat([p[1] for p in parts])
