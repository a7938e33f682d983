"""Watching modules during a forward pass: which run, in what order, with what outputs (``module_calls``), and
capturing what chosen layers output (``capture``). The hooks live only inside the ``with`` block."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import CnnlensError, CnnlensWarning


@dataclass(frozen=True)
class Call:
    """One call of a watched module: its ``name``, the ``module`` and ``output``, what ``keep`` made of the output
    (``None`` when nothing is kept)."""

    name: str
    module: nn.Module
    output: Any = None


@contextmanager
def module_calls(
    named: Sequence[tuple[str, nn.Module]],
    keep: Callable[[Any], Any] | None = None,
    first: bool = False,
    before: bool = False,
) -> Iterator[list[Call]]:
    """Yield a list that fills, while the block runs, with a `Call` for each call of the ``(name, module)`` pairs,
    in the order the calls end (``before``: begin; then nothing of the output is kept).

    ``keep``: what to keep of each output (e.g. its shape; default: nothing), so that no output outlives its call
    unless asked for. ``first``: only each name's first call. The model is not changed: the hooks return nothing,
    and they are removed when the block ends, also when it raises.
    """
    calls: list[Call] = []
    seen: set[str] = set()

    def make(name: str, module: nn.Module) -> Callable[..., None]:
        def on_call(_m: nn.Module, _args: tuple, *output: Any) -> None:
            if first and name in seen:
                return
            seen.add(name)
            calls.append(Call(name, module, keep(output[0]) if keep is not None and output else None))

        return on_call

    handles = []
    try:
        for name, module in named:
            register = module.register_forward_pre_hook if before else module.register_forward_hook
            handles.append(register(make(name, module)))
        yield calls
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture(
    layers: Sequence[nn.Module],
    inputs: bool = False,
    detach: bool = False,
    reused: str = "raise",
    names: Sequence[str] | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Yield a list that holds, after the forward pass, each layer's output (or first input) in order.

    ``detach``: capture each output as a new leaf that requires grad, and let the model continue from it, so a
    backward pass stops at the layer (use it when no gradient below the layer is needed).

    The model continues with a copy of each captured output, so a later in-place operation (e.g. an in-place
    ReLU right after the layer) cannot change what was captured, and gradients taken w.r.t. the captured
    tensor are gradients w.r.t. the layer's own output. A layer that runs more than once per forward pass
    is ambiguous: it raises (``reused="raise"``) or keeps the last output with a warning (``reused="last"``,
    for looking at activations). ``names``: how errors call the layers (default: their class names).
    """
    seen: list[list[torch.Tensor]] = [[] for _ in layers]
    out: list[torch.Tensor] = []
    handles = []

    def make(i: int) -> Callable[[nn.Module, tuple[object, ...], torch.Tensor], torch.Tensor | None]:
        def on_output(_m: nn.Module, args: tuple[object, ...], output: torch.Tensor) -> torch.Tensor | None:
            value = args[0] if inputs else output
            if not isinstance(value, torch.Tensor):
                raise CnnlensError(f"layer {type(layers[i]).__name__} gives a {type(value).__name__}, not a tensor")
            if detach and not inputs:
                value = output.detach().requires_grad_(True)
            seen[i].append(value)
            return None if inputs else value.clone()

        return on_output

    scripted = [i for i, layer in enumerate(layers) if isinstance(layer, torch.jit.ScriptModule)]
    if scripted:
        label = names[scripted[0]] if names is not None else type(layers[scripted[0]]).__name__
        raise CnnlensError(
            f"layer {label} is TorchScript code, which takes no forward hooks; look inside the model as an "
            f"nn.Module (load its state dict into its class)"
        )
    try:
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_hook(make(i)))
        yield out
    finally:
        for h in handles:
            h.remove()
    labels = list(names) if names is not None else [type(m).__name__ for m in layers]
    _check_runs(labels, [len(values) for values in seen], reused)
    out.extend(v[-1] for v in seen)


def _check_runs(labels: list[str], counts: list[int], reused: str) -> None:
    """Raise for a captured layer that did not run, or that ran more than once (``reused="last"``: warn)."""
    missing = [label for label, count in zip(labels, counts, strict=True) if not count]
    if missing:
        raise CnnlensError(f"layer(s) {', '.join(missing)} did not run in the forward pass; pick layers that do")
    repeated = [(label, count) for label, count in zip(labels, counts, strict=True) if count > 1]
    if repeated and reused == "raise":
        label, count = repeated[0]
        raise CnnlensError(
            f"layer {label} ran {count} times in one forward pass; choose a layer that runs exactly once "
            f"(a module reused in several places has no single output)"
        )
    if repeated:  # stacklevel: this function, capture, contextlib, the caller's ``with``
        listing = ", ".join(f"{label} ({count} times)" for label, count in repeated)
        warnings.warn(f"layer(s) ran more than once; the last output is kept: {listing}", CnnlensWarning, stacklevel=4)
