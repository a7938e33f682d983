"""Where attributions land: a run seen from a layer (:func:`layer_view`), the model cut there.

The view is a :class:`~cnnlens.engine._context.Context` whose inputs are the layer's activations (the head ran
once per image) and whose network is the tail, so every method written for inputs runs on a layer unchanged.
Also the layer's output for any input rows (``layer_activations``, ``project``), with the traced path checked
against the model before it is trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import capture
from ..models import Cut, State
from ._batching import Rows, Shared
from ._explained import ExplainedScore, network_logits
from ._memory import is_out_of_memory

if TYPE_CHECKING:
    from ._context import Context

T = torch.Tensor


class _TracedFailed(Exception):  # noqa: N818 - a signal inside this module, never raised to a caller
    """The traced path of a cut failed (``error``: what it raised, or why its numbers are not the model's)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _marked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a part of the traced cut) whose failures are marked as the traced path's (out of memory aside:
    the batching halves the chunk)."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:
            if is_out_of_memory(err):
                raise
            raise _TracedFailed(err) from err

    return run


def layer_view(ctx: Context, cut: Cut) -> Context:
    """``ctx`` seen from the layer of ``cut`` (see ``Context.at_layer``).

    An error of the model itself propagates unchanged: the model's own forward pass on these inputs runs first
    (once its logits are not known and the traced path is not trusted yet), or again after the traced path failed
    (where it was trusted). Only a failure of the traced path that the model's own forward pass does not repeat
    (the traced graph's code, a value crossing the cut, logits that differ) falls back to the hooked path (the
    same numbers), its reason recorded in ``cut.reason``."""
    if cut.path == "hooked":
        return _view(ctx, cut, trusted=False)
    trusted = cut.checked("logits", ctx.inputs) and ctx.explained.logits is None
    if not trusted:  # the model's own forward pass: a user's error raises here, as the user's model raised it
        _ = ctx.logits, ctx.targets
    try:
        return _view(ctx, cut, trusted)
    except _TracedFailed as failed:
        err = failed.error
    if trusted:
        _ = ctx.logits  # the model itself on these inputs: where it fails too, its error raises here unchanged
    cut.fall_back(f"the traced cut failed on these inputs ({type(err).__name__}: {err})")
    return _view(ctx, cut, trusted=False)


def _heads(ctx: Context, cut: Cut, rows: T, marked: bool = False) -> tuple[T, State]:
    """``(activations, state)`` of input-space ``rows`` at the cut, batched like the model's inputs (``marked``:
    a failure of the traced head raises ``_TracedFailed``)."""
    run_head = _marked(cut.head) if marked else cut.head

    def head(sl: slice) -> tuple[T, State]:
        with torch.no_grad():
            out = run_head(rows[sl])
        ctx.shared.count(sl.stop - sl.start, "head")
        return out

    parts = ctx.run(head, rows.shape[0])
    return torch.cat([a for a, _ in parts]), State.cat([s for _, s in parts])


def _view(ctx: Context, cut: Cut, trusted: bool) -> Context:
    """The layer view. The traced path's logits are compared with the model's once per model state and input
    shape; once they agreed (``trusted``), the view's logits are the model's (no full forward pass). A failure of
    the traced path while the view is built raises ``_TracedFailed``."""
    traced = cut.path == "traced"
    acts, state = _heads(ctx, cut, ctx.inputs, marked=traced)
    shared = ctx.shared

    def tail(rows: T, owner: T, given: State | None) -> T:
        shared.rows["tail"] += rows.shape[0]
        return cut.tail(rows, given if given is not None else state.take(owner))

    batching = ctx.batching.like(acts, layer=True)
    if not traced:  # the tail is the model itself
        logits = ctx.logits
    elif trusted:
        logits = network_logits(_marked(tail), batching, acts, ctx.owners())
        ctx.explained.logits = logits
    else:
        expected, logits = ctx.logits, network_logits(_marked(tail), batching, acts, ctx.owners())
        tol = max(1e-4, 16 * torch.finfo(logits.dtype).eps) * max(1.0, float(expected.abs().max()))
        if not torch.allclose(logits, expected, rtol=0, atol=tol):
            off = float((logits - expected).abs().max())
            raise _TracedFailed(CnnlensError(f"the model's head and tail give logits {off:.3g} off"))
        cut.passed("logits", ctx.inputs)
    targets = ctx.targets
    spec = ctx.explained.spec if ctx.explained.by_function else targets
    explained = ExplainedScore(spec, ctx.n, targets=targets, logits=logits)
    cls = type(ctx)  # Context (whose module imports this one)
    return cls(shared, acts, explained, network=tail, layer=cut.name, state=state, parent=ctx, batching=batching)


def check_inner(shared: Shared, cut: Cut, inputs: T) -> None:
    """The traced layer output of the first inputs must be the model's own; else the hooked path runs."""
    if cut.path != "traced" or id(cut) in shared.checked or cut.checked("inner", inputs):
        return
    shared.checked.add(id(cut))
    rows = inputs[:2]
    with torch.no_grad(), capture([cut.layer], names=[cut.name]) as outs:
        shared.model(rows)  # the model's own forward pass first: a user's error raises here, unchanged
    shared.count(rows.shape[0])
    try:
        with torch.no_grad():
            got = _marked(cut.inner)(rows)
    except _TracedFailed as failed:  # the model ran on these rows: the traced path failed (the hooked path runs)
        err = failed.error
        cut.fall_back(f"the traced layer output failed on these inputs ({type(err).__name__}: {err})")
        return
    shared.count(rows.shape[0], "head")
    tol = max(1e-4, 16 * torch.finfo(got.dtype).eps) * max(1.0, float(outs[0].abs().max()))
    if got.shape != outs[0].shape or not torch.allclose(got, outs[0], rtol=0, atol=tol):
        off = f"{float((got - outs[0]).abs().max()):.3g} off" if got.shape == outs[0].shape else "another shape"
        cut.fall_back(f"the traced layer output differs from the model's ({off})")
        return
    cut.passed("inner", inputs)


def layer_activations(ctx: Context, layer: str | nn.Module, rows: T | Rows) -> T:
    """The output of ``layer`` for input-space ``rows``, without gradients (only what it depends on runs)."""
    cut = ctx.shared.cut(layer)
    check_inner(ctx.shared, cut, ctx.inputs)

    def step(sl: slice) -> T:
        with torch.no_grad():
            out = cut.inner(rows[sl])
        ctx.shared.count(sl.stop - sl.start, "head")
        return out

    return torch.cat(ctx.run(step, rows.shape[0]))


def project(ctx: Context, rows: T) -> tuple[T, State]:
    """``(activations, state)`` of input-space ``rows`` at the layer of view ``ctx`` (the head only)."""
    if ctx.layer is None or ctx.parent is None:
        raise CnnlensError("project needs a layer view (ctx.at_layer(layer))")
    return _heads(ctx.parent, ctx.shared.cut(ctx.layer), rows)  # input rows: the batching of the model's inputs
