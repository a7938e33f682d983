"""Capture what chosen layers output during one forward pass; the hooks live only inside the ``with`` block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .._errors import CnnlensError


@contextmanager
def capture(layers: Sequence[nn.Module], inputs: bool = False, detach: bool = False) -> Iterator[list[torch.Tensor]]:
    """Yield a list that holds, after the forward pass, each layer's output (or first input) in order.

    ``detach``: capture each output as a new leaf that requires grad, and let the model continue from it, so a
    backward pass stops at the layer (use it when no gradient below the layer is needed).

    The model continues with a copy of each captured output, so a later in-place operation (e.g. an in-place
    ReLU right after the layer) cannot change what was captured, and gradients taken w.r.t. the captured
    tensor are gradients w.r.t. the layer's own output. A layer that runs more than once per forward pass
    is ambiguous and raises.
    """
    seen: list[list[torch.Tensor]] = [[] for _ in layers]
    out: list[torch.Tensor] = []
    handles = []

    def make(i: int):
        def on_output(_m: nn.Module, args: tuple, output: torch.Tensor):
            value = args[0] if inputs else output
            if not isinstance(value, torch.Tensor):
                raise CnnlensError(f"layer {type(layers[i]).__name__} gives a {type(value).__name__}, not a tensor")
            if detach and not inputs:
                value = output.detach().requires_grad_(True)
            seen[i].append(value)
            return None if inputs else value.clone()

        return on_output

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make(i)))
        yield out
    finally:
        for h in handles:
            h.remove()
    for i, values in enumerate(seen):
        if len(values) != 1:
            raise CnnlensError(
                f"layer {type(layers[i]).__name__} ran {len(values)} times in one forward pass; choose a layer "
                f"that runs exactly once (a module reused in several places has no single output)"
            )
    out.extend(v[0] for v in seen)
