"""What a method's rule mode may offer the engine's backward passes, besides being a context manager active
during the forward passes (guided backprop, DeepLIFT, LRP): a reference pass, and where the pass starts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch

T = torch.Tensor


@runtime_checkable
class ReferencePass(Protocol):
    """A rule that pairs each row with a reference row (DeepLIFT): ``recording()`` is active during the
    references' forward pass (the mode keeps their values), ``replaying()`` during the rows' pass that follows."""

    def recording(self) -> AbstractContextManager[Any]: ...

    def replaying(self) -> AbstractContextManager[Any]: ...

    def retry(self, err: Exception) -> bool:
        """Whether a chunk that raised ``err`` is run once more (the mode has adapted, e.g. the model changed a
        recorded reference value in place and the mode now records copies)."""
        ...


@runtime_checkable
class Objective(Protocol):
    """A rule whose backward pass starts from its own values at the logits (relevance propagation's initial
    relevance) instead of ``d score / d logits``."""

    def start(self, logits: T, grad: T) -> T:
        """``(N, K)``: what the backward pass starts from, given the logits and ``d score / d logits``."""
        ...
