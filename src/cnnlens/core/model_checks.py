"""What the models users bring can do to an explanation, checked where it matters.

* ``torch.compile``: a compiled model is explained through its original module, eagerly (``original_module``,
  ``explaining``). A compiled graph caches what it traced, including a backward rule active at that time, so a
  second method could silently get the first one's map.
* Batch statistics: a normalization layer that uses the statistics of each batch even in eval mode makes every
  output, and so every map, depend on which images share a forward pass (``warn_batch_dependent``).
* A forward that cuts the gradient (``torch.no_grad()`` inside, ``.detach()``, a NumPy round trip) gets an error
  naming the cause (``gradient_cut``), instead of autograd's "element 0 of tensors does not require grad".
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from .errors import CnnlensError, CnnlensWarning, say
from .hooks import module_calls

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_ACTIVE: ContextVar[bool] = ContextVar("cnnlens_explaining", default=False)
GRADIENT_FREE = "occlusion, feature_ablation, kernel_shap, score_cam or eigen_cam"
"""Methods that need no gradient of the model, named where a gradient cannot be had."""


def original_module(module: nn.Module) -> nn.Module:
    """The module ``torch.compile(module)`` wrapped (itself when it is not a compiled wrapper)."""
    frames = sys.modules.get("torch._dynamo.eval_frame")  # nothing is compiled unless dynamo was imported
    while frames is not None and isinstance(module, frames.OptimizedModule):
        module = module._orig_mod
    return module


@contextmanager
def eager() -> Iterator[None]:
    """Inside: every ``torch.compile`` directive is ignored (compiled wrappers, ``module.compile()``, compiled
    functions called in ``forward``), so the model runs as written, with forward hooks and backward rules."""
    if "torch._dynamo" not in sys.modules:
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


def batch_statistics_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorm layers that normalise with the statistics of the batch even in eval mode."""
    return [
        (name or type(m).__name__, m)
        for name, m in module.named_modules()
        if isinstance(m, _BatchNorm) and (not m.track_running_stats or m.running_mean is None)
    ]


def _caller_level() -> int:
    """``stacklevel`` for a warning raised by the caller of this function: the first frame outside cnnlens."""
    frame: FrameType | None = sys._getframe(1)
    level = 1  # the function that warns is level 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE) or "contextlib" in frame.f_code.co_filename
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn_batch_dependent(names: list[str]) -> None:
    """Warn that the model's outputs depend on which inputs share a forward pass (``names``: the layers)."""
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    warnings.warn(
        f"the model normalises with the statistics of each batch even in eval mode ({listed}: BatchNorm with "
        f"track_running_stats=False), so every output, and every map, depends on which inputs share a forward "
        f"pass: results change with {say('batch_size', '--batch-size')}. Give these layers running statistics "
        f"(track_running_stats=True, estimated on training data) for explanations of single images",
        CnnlensWarning,
        stacklevel=_caller_level(),
    )


@contextmanager
def explaining(module: nn.Module) -> Iterator[None]:
    """The checks every explanation and metric runs under: compiled code runs eagerly; a BatchNorm layer that used
    batch statistics in the run gets a warning when it ends well (once per outermost call: a metric that
    re-explains does not warn again). The layers are watched by forward pre-hooks that live inside the block."""
    outer = not _ACTIVE.get()
    token = _ACTIVE.set(True)
    layers = batch_statistics_layers(module) if outer else []
    scripted = [n for n, m in layers if isinstance(m, torch.jit.ScriptModule)]  # no hooks: counted as run
    watched = [(n, m) for n, m in layers if not isinstance(m, torch.jit.ScriptModule)]
    try:
        with module_calls(watched, first=True, before=True) as calls, eager():
            yield
    finally:
        _ACTIVE.reset(token)
    ran = scripted + [call.name for call in calls]
    if ran:
        warn_batch_dependent(ran)


class _CutWatch(TorchFunctionMode):
    """Records how a forward pass loses the gradient: calls under no_grad, detaching, leaving torch."""

    _LEAVE = {"numpy", "tolist", "item"}
    _DETACH = {"detach", "detach_"}
    # what reading ``.data`` calls (torch's stubs type ``Tensor.data`` as a tensor; on the class it is a descriptor)
    _DATA = torch.Tensor.data.__get__  # type: ignore[attr-defined]

    def __init__(self) -> None:
        super().__init__()
        self.causes: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        on_path = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        if not torch.is_grad_enabled():
            self._add("runs (partly) under torch.no_grad() or torch.inference_mode()")
        elif on_path and (name in self._DETACH or func == self._DATA):
            self._add("detaches a tensor on the way to the output (.detach() or .data)")
        elif on_path and name in self._LEAVE:
            self._add(f"leaves torch with .{name}() on the way to the output")
        return func(*args, **(kwargs or {}))

    def _add(self, cause: str) -> None:
        if cause not in self.causes:
            self.causes.append(cause)


def gradient_cut(model: nn.Module, x: torch.Tensor, what: str = "the inputs") -> CnnlensError:
    """The error for a score that does not depend on ``what`` through autograd, naming how the forward cuts it.

    Runs the model once more on ``x`` (with gradients) to find the cause."""
    watch = _CutWatch()
    leaf = x.detach().requires_grad_(True)
    try:
        with torch.enable_grad(), watch:
            model(leaf)
    except Exception:  # noqa: BLE001 - the diagnosis is best effort; the error below is raised either way
        pass
    cause = " and ".join(watch.causes) or (
        "does not use it on the way to the output, or cuts the autograd graph (no_grad, detach, a NumPy round trip)"
    )
    return CnnlensError(
        f"the model's output does not depend on {what} through autograd: its forward {cause}. Methods that use "
        f"gradients need it: remove the cut from forward (keep no_grad/detach outside the model), or use "
        f"a method that needs no gradients ({GRADIENT_FREE})"
    )


@contextmanager
def gradient_forward(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Around a forward pass whose gradient is needed: a model that refuses to run with gradients (e.g. it calls
    ``.numpy()`` on a tensor that requires grad) gets the ``gradient_cut`` error. Enter it before any rule mode or
    hook, so that the diagnosis runs the model as it is."""
    try:
        yield
    except RuntimeError as err:
        if "requires grad" not in str(err):
            raise
        raise gradient_cut(model, x) from err


def differentiate(
    score: torch.Tensor,
    wrt: Sequence[torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[nn.Module],
    optional: int = 0,
    inputs: str = "the inputs",
) -> list[torch.Tensor | None]:
    """``torch.autograd.grad(score.sum(), wrt)`` where ``wrt`` is the inputs (unless it has only the layers'
    outputs) followed by the outputs of ``layers`` and ``optional`` more tensors the score may not reach (their
    gradient is then ``None``); where the score does not reach one of the others, the ``gradient_cut`` error
    instead of autograd's own."""
    grads = torch.autograd.grad(score.sum(), wrt, allow_unused=True) if score.requires_grad else [None] * len(wrt)
    missing = [i for i, g in enumerate(grads[: len(wrt) - optional]) if g is None]
    if not missing:
        return list(grads)
    names = {id(m): n for n, m in model.named_modules()}
    labels = [f"layer {names.get(id(m), type(m).__name__)!r}" for m in layers]
    labels = labels if len(wrt) - optional == len(layers) else [inputs, *labels]
    raise gradient_cut(model, x, labels[missing[0]])
