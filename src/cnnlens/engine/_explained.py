"""What a context explains (:class:`ExplainedScore`): a class score or a neuron, the targets once resolved, and the
record of the inputs' logits; and the check every model output passes before it is used as logits.

A model with one output logit ``z`` is a binary classifier with two classes (:mod:`cnnlens.models._heads`): class
1 is explained through ``z``, class 0 through ``-z``, and the predicted class is 1 when ``z > 0``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.errors import CnnlensError
from ..models import State, class_scores, describe_output
from ._batching import Batching
from ._neuron import Neuron, one_per_row

T = torch.Tensor
Target = None | int | list | tuple | T | Callable[[T], T]
Network = Callable[[T, T, State | None], Any]
"""``(rows, owner, state) -> logits``: what a context's rows run through (the model, or the tail after a layer)."""


def check_logits(out: Any, n: int) -> T:
    """``out`` if it is the ``(n, classes)`` finite logits of ``n`` rows; else a clear error."""
    if not isinstance(out, torch.Tensor):
        raise CnnlensError(
            f"the model returned a {type(out).__name__}, not a tensor of logits. Wrap it so that it returns "
            f"the (batch, classes) logits with cnnlens.models.SelectOutput: {describe_output(out)}"
        )
    if out.dim() != 2 or out.shape[0] != n:
        raise CnnlensError(f"the model returned shape {tuple(out.shape)} for {n} inputs; expected (batch, classes)")
    if not torch.isfinite(out).all():
        raise CnnlensError("the model returned NaN or infinite logits for these inputs; check the inputs")
    return out


def network_logits(network: Network, batching: Batching, rows: T, owner: T) -> T:
    """The logits of ``rows`` through ``network``, batched, counted and checked, without gradients."""

    def step(sl: slice) -> T:
        chunk = rows[sl]
        with torch.no_grad():
            out = network(chunk, owner[sl], None)
        batching.shared.count(chunk.shape[0])
        return check_logits(out, chunk.shape[0])

    return torch.cat(batching.run(step, rows.shape[0]))


class ExplainedScore:
    """What the ``n`` images of a context are explained for, and what is known of it so far.

    ``spec``: the target as given (the predicted class when ``None``, an index, one per image, or a callable
    ``logits -> score per row``); ``neuron`` (with ``inner``, the neuron's layer output for input rows): a unit
    of a layer is explained instead. ``targets``: one class per image once resolved (``None`` with a callable);
    ``logits``: the images' logits once computed; ``values``: the neuron's value of each image once computed.
    """

    def __init__(
        self,
        spec: Target,
        n: int,
        neuron: Neuron | None = None,
        inner: Callable[[T], T] | None = None,
        *,
        targets: T | None = None,
        logits: T | None = None,
    ) -> None:
        self.spec, self.n, self.neuron, self.inner = spec, n, neuron, inner
        self.targets = targets
        self.logits = logits
        self.values: T | None = None

    @property
    def by_function(self) -> bool:
        """Whether the target is a callable of the logits (then there are no class targets)."""
        return callable(self.spec)

    def repeated(self, targets: T | None, repeat: int) -> ExplainedScore:
        """The same explained score for ``repeat`` consecutive rows per image (``targets``: the resolved ones)."""
        if self.neuron is None and targets is not None:
            targets = targets.repeat_interleave(repeat)
            return ExplainedScore(targets, self.n * repeat, targets=targets)
        return ExplainedScore(self.spec, self.n * repeat, self.neuron, self.inner)

    def resolve(self, logits: T) -> T:
        """The targets of the images for these logits (the spec checked); a one-logit model has classes 0 and 1."""
        spec, scores = self.spec, class_scores(logits)
        if spec is None:
            return scores.argmax(1)
        t = torch.as_tensor(spec, device=logits.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() > 1:
            raise CnnlensError(f"target must be an int, one int per image, or a callable; got {spec!r}")
        t = t.long().expand(self.n) if t.dim() == 0 else t.long()
        if t.numel() != self.n:
            raise CnnlensError(f"target has {t.numel()} entries but there are {self.n} images; give one per image")
        bad = (t < 0) | (t >= scores.shape[1])
        if bad.any():
            raise CnnlensError(f"target {t[bad].tolist()} out of range: {_classes(logits.shape[1])}")
        return t

    def select(self, logits: T, owner: T) -> T:
        """The class score each row is explained for: its owner's target logit, or the callable's value."""
        if callable(self.spec):
            return one_per_row(self.spec, logits, "a callable target must map logits", "score")
        if self.targets is None:
            if self.spec is None:  # only on the recording pass, where every row is its own image
                return class_scores(logits).max(1).values
            self.targets = self.resolve(logits)
        return class_scores(logits).gather(1, self.targets[owner][:, None])[:, 0]

    def score(self, out: Any, owner: T) -> T:
        """The explained score of each row from the output of a pass (the logits, or the neuron's layer output)."""
        return self.neuron(out) if self.neuron is not None else self.select(out, owner)

    def paired_scores(self, ref_out: Any, out: T, owner: T) -> T:
        """Scores of reference rows, each for the target of the row it is paired with (``out``: the rows')."""
        if self.neuron is None and self.targets is None and self.spec is None:
            top = class_scores(out).argmax(1, keepdim=True)  # recording pass: the rows' top classes
            return class_scores(ref_out).gather(1, top)[:, 0]
        return self.score(ref_out, owner)


def _classes(k: int) -> str:
    """What the classes of a model with ``k`` logits are, for an error message."""
    if k == 1:
        return "the model has one logit z, so two classes: 0 (explained through -z) and 1 (through z)"
    return f"the model has {k} classes (0..{k - 1})"
