"""The shared pipeline every method runs on: checked inputs, targets, batched model calls, pass counting.

``batch_size`` is the one batching knob: the most model inputs in one forward pass, used the same way by
IG steps, noise samples, DeepLIFT pairs and perturbations. ``None`` picks a size from a memory budget and
halves it whenever memory runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .._capture import capture
from .._errors import CnnlensError, UnsupportedOperationError, say
from .._guard import is_scripted
from .._model_checks import differentiate, gradient_forward
from .._progress import checkpoint
from ..models._outputs import describe as describe_output
from ._memory import auto_batch_size, is_out_of_memory

T = torch.Tensor
Target = None | int | list | tuple | T | Callable[[T], T]
Start = Callable[[T, T], T]


class Rows:
    """Rows made on demand, a slice at a time: ``Rows(n, make)[a:b] == make(slice(a, b))``.

    Lets a method describe thousands of perturbed inputs without holding them all in memory.
    """

    def __init__(self, n: int, make: Callable[[slice], T]) -> None:
        self.shape = (n,)
        self._make = make

    def __getitem__(self, sl: slice) -> T:
        return self._make(sl)


class Context:
    """One explanation run: a frozen model, checked inputs, resolved targets and a pass counter.

    Rows: a method evaluates the model on ``rows`` (e.g. IG path points) each owned by one input image
    (``owner[i]`` is the image row ``i`` belongs to); the target of a row is its owner's target.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: T,
        target: Target,
        batch_size: int | None,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.batch_size = batch_size
        self.generator = generator
        self.passes = 0
        self._target_spec = target
        self._logits: T | None = None
        self._targets: T | None = None  # (B,) long, or None with a callable target
        self._auto: int | None = None
        self.info: dict = {}  # method-specific diagnostics, copied to Explanation.info
        self.bar: Any = None  # a progress bar counting passes (set by Method.__call__), or None

    # ---- the model's own view of the inputs -------------------------------------------------------------
    @property
    def logits(self) -> T:
        """Logits of the inputs (one forward pass per image, computed once)."""
        if self._logits is None:
            self.scores(self.inputs, self.owners(), record=True)
        assert self._logits is not None
        return self._logits

    def target_scores(self) -> T:
        """f(x): the target score of each input (from the logits pass); resolves the targets on these logits,
        so that rows scored later (perturbed, ablated) are scored for the same classes."""
        _ = self.targets
        return self.select(self.logits, self.owners())

    @property
    def n(self) -> int:
        return self.inputs.shape[0]

    def owners(self, repeat: int = 1) -> T:
        """Owner index of ``repeat`` consecutive copies of every input row: [0,0,..,1,1,..]."""
        return torch.arange(self.n, device=self.inputs.device).repeat_interleave(repeat)

    @property
    def targets(self) -> T | None:
        """One class index per image (``None`` when the target is a callable)."""
        if self._targets is None and not callable(self._target_spec):
            self._targets = self._resolve_targets(self.logits)
        return self._targets

    def _resolve_targets(self, logits: T) -> T:
        spec, k = self._target_spec, logits.shape[1]
        if spec is None:
            return logits.argmax(1)
        t = torch.as_tensor(spec, device=logits.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() > 1:
            raise CnnlensError(f"target must be an int, one int per image, or a callable; got {spec!r}")
        t = t.long().expand(self.n) if t.dim() == 0 else t.long()
        if t.numel() != self.n:
            raise CnnlensError(f"target has {t.numel()} entries but there are {self.n} images; give one per image")
        bad = (t < 0) | (t >= k)
        if bad.any():
            raise CnnlensError(f"target {t[bad].tolist()} out of range: the model has {k} classes (0..{k - 1})")
        return t

    def select(self, logits: T, owner: T) -> T:
        """The score each row is explained for: its owner's target logit, or the callable's value."""
        if callable(self._target_spec):
            s = self._target_spec(logits)
            if not isinstance(s, torch.Tensor) or s.shape != (logits.shape[0],):
                raise CnnlensError(
                    f"a callable target must map logits of shape {tuple(logits.shape)} to one score per "
                    f"row, shape ({logits.shape[0]},); it returned {getattr(s, 'shape', type(s))}"
                )
            return s
        if self._targets is None:
            if self._target_spec is None:  # only on the recording pass, where every row is its own image
                return logits.max(1).values
            self._targets = self._resolve_targets(logits)
        return logits.gather(1, self._targets[owner][:, None])[:, 0]

    # ---- batched model calls ------------------------------------------------------------------------------
    def forward(self, x: T) -> T:
        """Run the model on one chunk, checking that it returns finite (N, K) logits."""
        out = self.model(x)
        self.passes += x.shape[0]
        checkpoint(x.shape[0])
        if self.bar is not None:
            self.bar.update(x.shape[0])
        if not isinstance(out, torch.Tensor):
            raise CnnlensError(
                f"the model returned a {type(out).__name__}, not a tensor of logits. Wrap it so that it returns "
                f"the (batch, classes) logits with cnnlens.models.SelectOutput: {describe_output(out)}"
            )
        if out.dim() != 2 or out.shape[0] != x.shape[0]:
            raise CnnlensError(
                f"the model returned shape {tuple(out.shape)} for {x.shape[0]} inputs; expected (batch, classes)"
            )
        if not torch.isfinite(out).all():
            raise CnnlensError("the model returned NaN or infinite logits for these inputs; check the inputs")
        return out

    def _size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if self._auto is None:
            self._auto = auto_batch_size(self.model, self.inputs)
        return self._auto

    def run(self, fn: Callable[[slice], T | tuple], n_rows: int, rows_per_item: int = 1) -> list:
        """Apply ``fn`` chunk by chunk; on out-of-memory with automatic sizing, halve and retry the chunk."""
        results, start = [], 0
        while start < n_rows:
            size = max(1, self._size() // rows_per_item)
            sl = slice(start, min(n_rows, start + size))
            try:
                results.append(fn(sl))
            except Exception as err:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not is_out_of_memory(err):
                    raise
                if self.batch_size is not None or self._size() <= 1:
                    raise CnnlensError(
                        f"out of memory with {self._size()} model inputs per forward pass; pass a smaller "
                        + say(
                            "batch_size (or batch_size=None to find one automatically)",
                            "--batch-size (or leave it out to find one automatically)",
                        )
                    ) from err
                self._auto = max(1, self._size() // 2)
                continue
            start = sl.stop
        return results

    def scores(self, x: T | Rows, owner: T, record: bool = False) -> T:
        """Target scores of every row, without gradients. ``record``: ``x`` are the inputs themselves."""

        if not record:
            _ = self.targets

        def step(sl: slice) -> tuple[T, T]:
            with torch.no_grad():
                logits = self.forward(x[sl])
            return logits, self.select(logits, owner[sl])

        parts = self.run(step, x.shape[0])
        if record:
            self._logits = torch.cat([p[0] for p in parts])
        return torch.cat([p[1] for p in parts])

    def gradients(
        self,
        x: T,
        owner: T,
        mode: AbstractContextManager | None = None,
        reference: T | None = None,
        record: bool = False,
    ) -> tuple[T, T]:
        """(scores, d score / d x) for every row, chunked. ``mode`` is active during forward passes only.

        ``reference``: one reference row per row; each chunk is run as ``cat([x, reference])`` (DeepLIFT) and
        only the first half is scored. ``record``: ``x`` are the inputs, so their logits are kept.
        """
        scores, grads, _, _ = self.backward(x, owner, mode=mode, reference=reference, record=record)
        assert grads is not None
        return scores, grads

    def backward(
        self,
        x: T,
        owner: T,
        mode: AbstractContextManager | None = None,
        reference: T | None = None,
        record: bool = False,
        layers: Sequence[nn.Module] = (),
        input_grad: bool = True,
        start: Start | None = None,
    ) -> tuple[T, T | None, list[T], list[T]]:
        """Like ``gradients``, plus the outputs of ``layers`` and the gradients of the scores w.r.t. them.

        ``input_grad=False`` with one layer: the backward pass stops at that layer (no input gradients).
        ``start``: ``(logits, d score / d logits) -> (N, K)``, what the backward pass starts from at the logits
        in place of ``d score / d logits`` (relevance propagation's initial relevance).
        """
        if not record:
            _ = self.targets
        if isinstance(mode, TorchFunctionMode) and is_scripted(self.model):
            raise UnsupportedOperationError(
                f"{getattr(mode, 'method', 'this method')} changes the backward pass of the model's activations, which it cannot reach inside "
                f"TorchScript code (the result would silently be another method); explain the model as an "
                f"nn.Module (load its state dict into its class), or use a method without its own rule"
            )
        logits_parts: list[T] = []
        cut = not input_grad and len(layers) == 1

        def step(sl: slice) -> tuple:
            xi = x[sl].detach().requires_grad_(not cut)
            batch = xi if reference is None else torch.cat([xi, reference[sl].detach()])
            with torch.enable_grad():
                rule = mode if mode is not None else nullcontext()
                with gradient_forward(self.model, batch), rule, capture(layers, detach=cut) as outs:
                    logits = self.forward(batch)[: xi.shape[0]]
                s = self.select(logits, owner[sl])
                wrt = outs if cut else [xi, *outs]
                objective = s
                if start is not None and s.requires_grad:
                    (g0,) = torch.autograd.grad(s.sum(), logits, retain_graph=True)
                    r0 = start(logits.detach(), g0).detach()  # a scalar objective: d(sum(logits * r0)) = r0
                    objective = (logits * r0).sum(1)
                grads = differentiate(objective, wrt, self.model, batch, layers)
            g = None if cut else grads.pop(0)
            if record:
                logits_parts.append(logits.detach())
            n = xi.shape[0]
            return s.detach(), g, [o[:n].detach() for o in outs], [lg[:n] for lg in grads]

        parts = self.run(step, x.shape[0], rows_per_item=1 if reference is None else 2)
        if record:
            self._logits = torch.cat(logits_parts)
        cat = torch.cat
        n = len(layers)
        return (
            cat([p[0] for p in parts]),
            None if cut else cat([p[1] for p in parts]),
            [cat([p[2][i] for p in parts]) for i in range(n)],
            [cat([p[3][i] for p in parts]) for i in range(n)],
        )

    def input_gradients(self, mode: AbstractContextManager | None = None, reference: T | None = None) -> T:
        """Gradients of the target scores at the inputs; the same passes give the logits."""
        record = self._logits is None
        return self.gradients(self.inputs, self.owners(), mode=mode, reference=reference, record=record)[1]

    def randn(self, *shape: int) -> T:
        return torch.randn(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def rand(self, *shape: int) -> T:
        return torch.rand(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def randint(self, high: int, *shape: int) -> T:
        return torch.randint(high, shape, generator=self.generator, device="cpu").to(self.inputs.device)


def sum_per_row(t: T) -> T:
    return t.flatten(1).sum(1)
