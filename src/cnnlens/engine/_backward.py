"""Gradients of the explained score: the batched backward passes of the engine (:class:`Differentiation`, a part
of :class:`~cnnlens.engine._context.Context`).

One call differentiates the explained score of every row w.r.t. the rows, chosen layers' outputs and the values
that skip a layer, optionally under a method's rule mode (guided backprop, DeepLIFT, LRP) and with reference rows
run first (DeepLIFT's reference pass); chunked and counted like every model call of the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..attribution._gradient_modes import ReferenceChanged
from ..core.errors import CnnlensError, UnsupportedOperationError
from ..core.hooks import capture
from ..core.model_checks import differentiate, gradient_forward
from ..core.model_guard import is_scripted
from ..models import State

T = torch.Tensor
Start = Callable[[T, T], T]


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
    """With ``state_grad=True``: ``d score / d value`` of each row-wise value crossing the layer (else empty)."""
    reference_scores: T | None = None
    """The explained score of each reference row, for its paired row's target (with ``reference=``)."""


class Differentiation:
    """The backward passes of a :class:`~cnnlens.engine._context.Context` (it supplies ``model``, ``run``,
    ``_output``, ``_score``, the targets and the logits record)."""

    def gradients(
        self, x: T, owner: T, mode: AbstractContextManager | None = None, reference: T | None = None
    ) -> tuple[T, T]:
        """(scores, d score / d x) for every row, chunked. ``mode`` is active during forward passes only.

        ``reference``: one reference row per row (DeepLIFT): see ``backward``.
        """
        b = self.backward(x, owner, mode=mode, reference=reference)
        assert b.grad is not None
        return b.scores, b.grad

    def backward(
        self,
        x: T,
        owner: T,
        mode: AbstractContextManager | None = None,
        reference: T | None = None,
        layers: Sequence[nn.Module] = (),
        input_grad: bool = True,
        state: State | None = None,
        state_grad: bool = False,
        start: Start | None = None,
    ) -> Backward:
        """Scores of every row with their gradients, and the outputs of ``layers`` with the gradients of the
        scores w.r.t. them. ``input_grad=False`` with one layer: the backward pass stops at that layer (no input
        gradients). ``state``: see ``evaluate``; ``state_grad``: also the gradients w.r.t. its row-wise values
        (the flow through what skips the layer). ``start``: ``(logits, d score / d logits) -> (N, K)``, what the
        backward pass starts from at the logits in place of ``d score / d logits`` (relevance propagation's
        initial relevance). Rows that are the inputs themselves also give the logits.

        ``reference``: one reference row per row. Each chunk runs the references first (no backward pass through
        them; ``mode.recording()`` around it, if the mode has it, lets the mode keep their values, e.g. DeepLIFT's
        reference activations), then the rows (inside ``mode.replaying()``); the references' scores, each for its
        row's target, and their layer outputs come from that pass."""
        record = self._recording(x)
        if not record and self.neuron is None:
            _ = self.targets
        if isinstance(mode, TorchFunctionMode) and is_scripted(self.model):
            raise UnsupportedOperationError(
                f"{getattr(mode, 'method', 'this method')} changes the backward pass of the model's activations, which it cannot reach inside "
                f"TorchScript code (the result would silently be another method); explain the model as an "
                f"nn.Module (load its state dict into its class), or use a method without its own rule"
            )
        if reference is not None and state is not None:
            raise CnnlensError("backward: give reference rows or a state, not both")
        logits_parts: list[T] = []
        cut = not input_grad and len(layers) == 1

        def step(sl: slice) -> tuple:
            try:
                return attempt(sl)
            except ReferenceChanged:  # the model changed a recorded reference value in place: record copies
                mode.copies = True  # type: ignore[union-attr]
                return attempt(sl)

        def attempt(sl: slice) -> tuple:
            xi = x[sl].detach().requires_grad_(not cut)
            own = owner[sl]
            paired = nullcontext()
            if reference is not None:
                ref_out, ref_outs, paired = self._reference_pass(reference[sl], own, mode, layers, cut)
            st, flows = None if state is None else state[sl], []
            if st is not None and state_grad:
                values = [
                    v.detach().requires_grad_(True) if k == "rows" else v
                    for v, k in zip(st.values, st.kinds, strict=True)
                ]
                st = State(tuple(values), st.kinds)
                flows = [v for v, k in zip(values, st.kinds, strict=True) if k == "rows"]
            rule = mode if mode is not None else nullcontext()
            at, called = self._diagnosis(xi)  # a model that refuses gradients is diagnosed on its own inputs
            watch = gradient_forward(self.model, at)
            with torch.enable_grad():
                with watch, rule, paired, capture(layers, detach=cut) as outs:
                    out = self._output(xi, own, st)
                s = self._score(out, own)  # outside the rule: the score's selection is not the model's
                objective = s
                if start is not None and s.requires_grad:
                    (g0,) = torch.autograd.grad(s.sum(), out, retain_graph=True)
                    r0 = start(out.detach(), g0).detach()  # a scalar objective: d(sum(logits * r0)) = r0
                    objective = (out * r0).sum(1)
                wrt = [*outs, *flows] if cut else [xi, *outs, *flows]
                grads = differentiate(objective, wrt, self.model, at, layers, optional=len(flows), inputs=called)
            g = None if cut else grads.pop(0)
            sg = [torch.zeros_like(v) if d is None else d for v, d in zip(flows, grads[len(outs) :], strict=True)]
            grads = grads[: len(outs)]
            if record:
                logits_parts.append(out.detach())
            refs, ref_s = [], None
            if reference is not None:
                refs, ref_s = ref_outs, self._paired_scores(ref_out, out.detach(), own)
            return s.detach(), g, [o.detach() for o in outs], grads, refs, sg, ref_s

        parts = self.run(step, x.shape[0], rows_per_item=1 if reference is None else 2)
        if record:
            self._logits = torch.cat(logits_parts)
        cat = torch.cat
        k = len(layers)
        return Backward(
            cat([p[0] for p in parts]),
            None if cut else cat([p[1] for p in parts]),
            [cat([p[2][i] for p in parts]) for i in range(k)],
            [cat([p[3][i] for p in parts]) for i in range(k)],
            [cat([p[4][i] for p in parts]) for i in range(k)] if reference is not None else [],
            [cat([p[5][i] for p in parts]) for i in range(len(parts[0][5]))] if parts else [],
            cat([p[6] for p in parts]) if reference is not None else None,
        )

    def _reference_pass(
        self, ref: T, owner: T, mode: AbstractContextManager | None, layers: Sequence[nn.Module], cut: bool
    ) -> tuple[Any, list[T], AbstractContextManager]:
        """The forward pass of one chunk of reference rows: ``(output, layer outputs, the mode's replaying
        context for the rows' pass)``. Run like the rows' pass (gradients on, so the mode sees the same
        operations), inside ``mode.recording()``; nothing is differentiated."""
        r = ref.detach().requires_grad_(not cut)
        record = getattr(mode, "recording", None)
        at, _ = self._diagnosis(r)
        rule, recording = mode or nullcontext(), record() if record is not None else nullcontext()
        with (
            torch.enable_grad(),
            gradient_forward(self.model, at),
            rule,
            recording,
            capture(layers, detach=cut) as outs,
        ):
            out = self._output(r, owner)
        replay = getattr(mode, "replaying", None)
        return out.detach(), [o.detach() for o in outs], replay() if replay is not None else nullcontext()

    def _paired_scores(self, ref_out: Any, out: T, owner: T) -> T:
        """Scores of reference rows, each for the target of the row it is paired with (``out``: the rows')."""
        if self._explained is None and self._targets is None and self._target_spec is None:
            return ref_out.gather(1, out.argmax(1, keepdim=True))[:, 0]  # recording pass: the rows' top classes
        return self._score(ref_out, owner)

    def _diagnosis(self, batch: T) -> tuple[T, str]:
        """What a gradient-cut error runs the model on to find the cause (the model's own inputs, also for a layer
        view), and what the rows are called in it."""
        if self.layer is None or self._parent is None:
            return batch, "the inputs"
        return self._parent.inputs, f"the output of layer {self.layer!r}"

    def input_gradients(self, mode: AbstractContextManager | None = None, reference: T | None = None) -> T:
        """Gradients of the explained scores at the inputs; the same passes give the logits."""
        return self.gradients(self.inputs, self.owners(), mode=mode, reference=reference)[1]
