"""Gradients of the explained score: the batched backward passes of a
:class:`~cnnlens.engine._context.Context` (``ctx.backward``).

One call differentiates the explained score of every row w.r.t. the rows, chosen layers' outputs and the values
that skip a layer, optionally under a method's rule mode (guided backprop, DeepLIFT, LRP; see
:mod:`~cnnlens.engine._modes` for what a mode may add) and with reference rows run first (DeepLIFT's reference
pass); chunked and counted like every model call of the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..core.errors import CnnlensError, UnsupportedOperationError
from ..core.hooks import capture
from ..core.model_checks import differentiate, gradient_forward
from ..core.model_guard import is_scripted
from ..models import State
from ._batching import Rows
from ._modes import Objective, ReferencePass

if TYPE_CHECKING:
    from ._context import Context

T = torch.Tensor


class Backward(NamedTuple):
    """What one batched backward pass gives, for every row."""

    scores: T
    """The explained score of each row."""
    grad: T | None
    """``d score / d row`` (``None`` with ``input_grad=False``)."""
    outputs: list[T]
    """Each requested layer's output for the rows."""
    layer_grads: list[T]
    """``d score / d output`` of each requested layer."""
    reference_outputs: list[T]
    """Each requested layer's output for the reference rows (with ``reference=``; else empty)."""
    state_grads: list[T]
    """With ``state=``: ``d score / d value`` of each row-wise value crossing the layer (else empty)."""
    reference_scores: T | None = None
    """The explained score of each reference row, for its paired row's target (with ``reference=``)."""


@dataclass
class _Pass:
    """What every chunk of one backward call does."""

    mode: AbstractContextManager | None
    layers: Sequence[nn.Module]
    cut: bool  # the pass stops at the one layer (no gradients w.r.t. the rows)
    record: bool  # the rows are the inputs, whose logits the pass records


@dataclass
class _Chunk:
    """What the backward pass of one chunk of rows gives (see :class:`Backward`)."""

    scores: T
    grad: T | None
    outputs: list[T]
    layer_grads: list[T]
    state_grads: list[T]
    logits: T | None = None  # the rows' logits, when the pass records them
    reference_outputs: list[T] = field(default_factory=list)
    reference_scores: T | None = None


def backward(
    ctx: Context,
    x: T | Rows,
    owner: T,
    mode: AbstractContextManager | None = None,
    reference: T | None = None,
    layers: Sequence[nn.Module] = (),
    input_grad: bool = True,
    state: State | None = None,
) -> Backward:
    """Scores of every row with their gradients, and the outputs of ``layers`` with the gradients of the scores
    w.r.t. them. ``input_grad=False`` with one layer: the backward pass stops at that layer (no input gradients).
    ``state``: see ``Context.evaluate``; with it, also the gradients w.r.t. its row-wise values (the flow through
    what skips the layer). A ``mode`` that is an :class:`~cnnlens.engine._modes.Objective` gives what the pass
    starts from at the logits (relevance propagation's initial relevance). Rows that are the inputs themselves
    also give the logits.

    ``reference``: one reference row per row. Each chunk runs the references first (no backward pass through
    them; inside ``mode.recording()`` when the mode is a :class:`~cnnlens.engine._modes.ReferencePass`, which
    lets it keep their values, e.g. DeepLIFT's reference activations), then the rows (inside
    ``mode.replaying()``); the references' scores, each for its row's target, and their layer outputs come from
    that pass. A chunk that fails is run once more when the mode's ``retry`` says so."""
    p = _Pass(mode, layers, not input_grad and len(layers) == 1, ctx.logits_due(x))
    if not p.record and ctx.neuron is None:
        _ = ctx.targets
    _check_mode(ctx, mode)
    if reference is not None and state is not None:
        raise CnnlensError("backward: give reference rows or a state, not both")

    def attempt(sl: slice) -> _Chunk:
        ref = None if reference is None else reference[sl]
        return _chunk(ctx, p, x[sl], owner[sl], ref, None if state is None else state[sl])

    def step(sl: slice) -> _Chunk:
        try:
            return attempt(sl)
        except Exception as err:
            if not (isinstance(mode, ReferencePass) and mode.retry(err)):
                raise
            return attempt(sl)

    chunks = ctx.run(step, x.shape[0], rows_per_item=1 if reference is None else 2)
    if p.record:
        ctx.explained.logits = torch.cat([c.logits for c in chunks])
    return _joined(chunks, p.cut, reference is not None)


def _check_mode(ctx: Context, mode: AbstractContextManager | None) -> None:
    if isinstance(mode, TorchFunctionMode) and is_scripted(ctx.model):
        raise UnsupportedOperationError(
            f"{getattr(mode, 'method', 'this method')} changes the backward pass of the model's activations, which it cannot reach inside "
            f"TorchScript code (the result would silently be another method); explain the model as an "
            f"nn.Module (load its state dict into its class), or use a method without its own rule"
        )


def _chunk(ctx: Context, p: _Pass, rows: T, own: T, ref: T | None, state: State | None) -> _Chunk:
    """The backward pass of one chunk of rows (after its references' forward pass, with ``ref``)."""
    xi = rows.detach().requires_grad_(not p.cut)
    paired: AbstractContextManager[Any] = nullcontext()
    reference = None if ref is None else _reference_pass(ctx, p, ref, own)
    if reference is not None:
        paired = reference[2]
    st, flows = _flows(state)
    rule = p.mode if p.mode is not None else nullcontext()
    at, called = _diagnosis(ctx, xi)  # a model that refuses gradients is diagnosed on its own inputs
    watch = gradient_forward(ctx.model, at)
    with torch.enable_grad():
        with watch, rule, paired, capture(p.layers, detach=p.cut) as outs:
            out = ctx.output(xi, own, st)
        s = ctx.explained.score(out, own)  # outside the rule: the score's selection is not the model's
        objective = _objective(s, out, p.mode)
        wrt = [*outs, *flows] if p.cut else [xi, *outs, *flows]
        grads = differentiate(objective, wrt, ctx.model, at, p.layers, optional=len(flows), inputs=called)
    g = None if p.cut else grads.pop(0)
    sg = [torch.zeros_like(v) if d is None else d for v, d in zip(flows, grads[len(outs) :], strict=True)]
    chunk = _Chunk(s.detach(), g, [o.detach() for o in outs], cast(list[T], grads[: len(outs)]), sg)
    if p.record:
        chunk.logits = out.detach()
    if reference is not None:
        chunk.reference_outputs = reference[1]
        chunk.reference_scores = ctx.explained.paired_scores(reference[0], out.detach(), own)
    return chunk


def _flows(state: State | None) -> tuple[State | None, list[T]]:
    """``state`` with its row-wise values made leaves that require gradients, and those values."""
    if state is None:
        return None, []
    values = [
        v.detach().requires_grad_(True) if k == "rows" else v for v, k in zip(state.values, state.kinds, strict=True)
    ]
    flows = [v for v, k in zip(values, state.kinds, strict=True) if k == "rows"]
    return State(tuple(values), state.kinds), flows


def _objective(s: T, out: T, mode: AbstractContextManager | None) -> T:
    """What is differentiated: the scores, or with an :class:`Objective` mode ``sum(logits * start)`` per row."""
    if not isinstance(mode, Objective) or not s.requires_grad:
        return s
    (g0,) = torch.autograd.grad(s.sum(), out, retain_graph=True)
    r0 = mode.start(out.detach(), g0).detach()  # a scalar objective: d(sum(logits * r0)) = r0
    return (out * r0).sum(1)


def _reference_pass(ctx: Context, p: _Pass, ref: T, owner: T) -> tuple[Any, list[T], AbstractContextManager[Any]]:
    """The forward pass of one chunk of reference rows: ``(output, layer outputs, the mode's replaying
    context for the rows' pass)``. Run like the rows' pass (gradients on, so the mode sees the same
    operations), inside ``mode.recording()``; nothing is differentiated."""
    r = ref.detach().requires_grad_(not p.cut)
    at, _ = _diagnosis(ctx, r)
    rule = p.mode if p.mode is not None else nullcontext()
    recording = p.mode.recording() if isinstance(p.mode, ReferencePass) else nullcontext()
    with (
        torch.enable_grad(),
        gradient_forward(ctx.model, at),
        rule,
        recording,
        capture(p.layers, detach=p.cut) as outs,
    ):
        out = ctx.output(r, owner)
    replay = p.mode.replaying() if isinstance(p.mode, ReferencePass) else nullcontext()
    return out.detach(), [o.detach() for o in outs], replay


def _diagnosis(ctx: Context, batch: T) -> tuple[T, str]:
    """What a gradient-cut error runs the model on to find the cause (the model's own inputs, also for a layer
    view), and what the rows are called in it."""
    if ctx.layer is None or ctx.parent is None:
        return batch, "the inputs"
    return ctx.parent.inputs, f"the output of layer {ctx.layer!r}"


def _joined(chunks: list[_Chunk], cut: bool, paired: bool) -> Backward:
    """The chunks' results, concatenated row-wise."""

    def each(lists: list[list[T]]) -> list[T]:
        return [torch.cat(parts) for parts in zip(*lists, strict=True)]

    return Backward(
        torch.cat([c.scores for c in chunks]),
        None if cut else _cat([c.grad for c in chunks]),
        each([c.outputs for c in chunks]),
        each([c.layer_grads for c in chunks]),
        each([c.reference_outputs for c in chunks]) if paired else [],
        each([c.state_grads for c in chunks]),
        _cat([c.reference_scores for c in chunks]) if paired else None,
    )


def _cat(parts: list[T | None]) -> T:
    """One tensor that every chunk has a part of, concatenated."""
    present = [p for p in parts if p is not None]
    assert len(present) == len(parts), "internal: a chunk lacks its part"
    return torch.cat(present)
