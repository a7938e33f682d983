"""The pipeline every method shares. A method is a small class that implements ``compute`` only."""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, final

import torch
from torch import nn

from ..core.display import Displayable
from ..core.errors import CnnlensError
from ..core.model_checks import explaining, original_module
from ..core.model_guard import frozen, model_device
from ..core.options import Option, defaults, describe, validate
from ..core.progress import progress as progress_switch
from ..core.progress import progress_bar
from ..engine import Context, Neuron, Target
from ..models import class_probabilities
from ._baselines import baseline_distribution, drawing_from, single_baseline
from ._checkpointing import checkpointing_off
from ._smooth import SMOOTH_OPTIONS, smoothed

if TYPE_CHECKING:
    from ..models import Classifier

T = torch.Tensor

INVARIANCES: dict[str, str] = {
    "shift": "the map is unchanged when the same constant is added to every logit (e.g. to the last layer's bias)",
    "negation": "the map is negated when every logit is negated (the explained score changes sign)",
    "unsigned": "the map is unchanged when every logit is negated (it shows magnitudes, or no class score is "
    "explained)",
    "baseline_zero": "an image equal to the baseline (to every baseline of a distribution) gets an all-zero map",
    "batch": "each image's map is the same whether it is explained in a batch or alone (with the same seed)",
}
"""What a method's ``invariances`` may name: properties its definition guarantees, with its default options
(``tests/test_properties.py`` checks each declared one on small nets, and only those)."""


@dataclass
class Explanation(Displayable):
    """What one method says about a batch of inputs (in a notebook: its maps over its images; ``.plot()``)."""

    attributions: T
    """``(B, C, H, W)`` like the inputs (``(B, 1, H, W)`` for map-like methods; for layer methods shaped like the
    layer's output, e.g. ``(B, K, h, w)``), on the inputs' device."""
    method: str
    target: T | Callable[[T], T] | None
    """The class index explained per image, or the callable target that was given (``None`` when a neuron is
    explained instead of a class)."""
    probabilities: T
    """Softmax of the model's logits for the inputs, ``(B, K)``; for a one-logit model ``z``, the two classes'
    ``[sigmoid(-z), sigmoid(z)]``, ``(B, 2)``."""
    passes: float
    """Model inputs evaluated (each image in a forward pass counts once; an image computed incrementally counts as
    the fraction of a full pass's multiply-adds it cost, see ``info["multiply_adds"]``)."""
    options: dict[str, Any] = field(default_factory=dict)
    delta: T | None = None
    """Per-image completeness error ``sum(attr) - (f(x) - f(baseline))`` where the method defines one."""
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    """Method-specific diagnostics (e.g. passes per image of adaptive integrated gradients; for methods that cut
    the model at a layer, ``cut``: its path and ``rows``: rows through the head and the tail)."""
    layer: str | None = None
    """Layer methods: the layer the attributions belong to; neuron methods: the layer of the explained unit."""
    neuron: Any = None
    """Neuron methods: the unit explained (a channel, a ``(channel, y, x)`` unit or a callable)."""
    logits: T | None = None
    """The model's logits for the inputs, ``(B, K)`` (``probabilities`` is their softmax, or their sigmoid for one
    logit), from the passes the method made anyway."""
    inputs: T | None = field(default=None, repr=False)
    """The explained inputs ``(B, C, H, W)``, kept for pictures (``plot``, the notebook display)."""
    preprocessing: Any = field(default=None, repr=False)
    """The classifier's preprocessing when the model was a Classifier (to show the inputs as images)."""
    class_names: list[str] | None = field(default=None, repr=False)
    """The classifier's class names when the model was a Classifier with names (to name the explained class)."""

    @property
    def predictions(self) -> T:
        return self.probabilities.argmax(1)

    def plot(self, max_images: int = 6, view: str = "blended", sign: str | None = None) -> Any:
        """A Figure: the first ``max_images`` inputs with this method's map over each and one colour bar
        (``sign``: default ``all`` when the maps have negative values, else ``positive``)."""
        from ..viz import explanation_figure

        return explanation_figure(self, max_images, view, sign)

    def _summary(self) -> list[tuple[str, str]]:
        rows = [("method", self.method), ("attributions", str(tuple(self.attributions.shape))),
                ("passes", str(self.passes)), ("seconds", f"{self.seconds:.2f}")]  # fmt: skip
        if self.delta is not None:
            rows.append(("max |completeness delta|", f"{self.delta.abs().max().item():.3g}"))
        return rows

    def __repr__(self) -> str:
        d = "" if self.delta is None else f", max |delta|={self.delta.abs().max().item():.3g}"
        return (
            f"Explanation({self.method}, attributions={tuple(self.attributions.shape)}, "
            f"passes={self.passes}{d}, {self.seconds:.2f}s)"
        )


class Method:
    """Base class: subclasses set the class attributes and implement ``compute``; ``__call__`` runs it all."""

    name: ClassVar[str] = ""
    category: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[dict[str, Option]] = {}
    """The method's own options, declared once (``cnnlens._options``); ``smooth=`` and friends are shared."""
    needs_baseline: ClassVar[str | None] = None  # None, "single" or "distribution"
    has_delta: ClassVar[bool] = False
    explains_class: ClassVar[bool] = True
    """False for methods that explain a neuron's value instead of a class score (they take no target)."""
    output: ClassVar[str] = "input"
    """"input": like the inputs; "map": one channel; "layer": like the layer's output; "layer_map": one channel at
    the layer's resolution."""
    invariances: ClassVar[frozenset[str]] = frozenset()
    """The properties the method's definition guarantees with its default options, by the names of
    ``INVARIANCES`` (each registered method sets its own)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.invariances) - set(INVARIANCES)
        if unknown:
            raise CnnlensError(
                f"{cls.__name__} declares unknown invariances {sorted(unknown)}; known: {list(INVARIANCES)}"
            )
        if cls.name:  # help(method) lists the options with their defaults, rules and meaning
            doc = cls.__dict__.get("__doc__") or cls.summary
            cls.__doc__ = f"{doc}\n\n{describe({**cls.params, **SMOOTH_OPTIONS})}"

    def __init__(self, **options: Any) -> None:
        values = validate(self.name, {**self.params, **SMOOTH_OPTIONS}, options)
        self.options = {k: v for k, v in values.items() if k in self.params or k in options}
        self.check_options()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{option: default}`` of the method's own options."""
        return defaults(cls.params)

    def check_options(self) -> None:
        """Validate ``self.options`` (override to add checks)."""

    def resolve_baseline(self, spec: Any, inputs: T, preprocessing: Any) -> T | None:
        """The baseline(s) ``compute`` receives, from what the caller gave (override for mask-aware baselines)."""
        if self.needs_baseline == "single":
            return single_baseline(spec, inputs, preprocessing)
        if self.needs_baseline == "distribution":
            return baseline_distribution(spec, inputs, preprocessing)
        if spec is not None:
            raise CnnlensError(f"{self.name} does not use a baseline; remove baseline=")
        return None

    def explained(self, target: Target) -> Neuron | None:
        """What is explained: ``None`` for the class score ``target``, or a neuron (neuron methods override)."""
        return None

    def check_result(self, ctx: Context, attributions: T) -> None:
        """Raise `CnnlensError` when the attributions cannot mean what the method says (default: nothing to check)."""

    def layer_name(self, ctx: Context) -> str | None:
        """The layer the explanation belongs to (``Explanation.layer``); layer and neuron methods override."""
        return None

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T | None]:
        """Return ``(attributions, delta or None)`` for ``ctx.inputs`` (the one step a method writes)."""
        raise NotImplementedError

    @final
    def __call__(
        self,
        model: Classifier | nn.Module,
        inputs: Any,
        *,
        target: Target = None,
        baseline: Any = None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> Explanation:
        start = time.perf_counter()
        module, preprocessing = unwrap(model)
        x = check_inputs(module, inputs, preprocessing)
        check_run_options(batch_size, seed)
        generator = torch.Generator().manual_seed(int(seed))
        neuron = self.explained(target)
        # a bar of model passes, shown when the run takes over 2 s; progress=False silences every bar inside
        bar = progress_bar(desc=self.name, unit="pass", delay=2.0, leave=False, disable=not progress)
        with progress_switch(progress), bar, frozen(module), checkpointing_off(module) as off, explaining(module):
            ctx = Context.create(module, x, target, batch_size, generator, neuron=neuron)
            ctx.bar = bar
            with drawing_from(generator):  # baseline="noise" draws from the run's generator
                base = self.resolve_baseline(baseline, x, preprocessing)
            if self.options.get("smooth"):
                attr, delta = smoothed(self.compute, self.options, ctx, base)
            else:
                attr, delta = self.compute(ctx, base)
            self.check_result(ctx, attr)
            probabilities = class_probabilities(ctx.logits)
            targets = None if neuron is not None else _explained_for(ctx, target)
            layer = self.layer_name(ctx)
        info = ctx.info if not off else {**ctx.info, "checkpointing_off": off}
        if any(ctx.shared.rows.values()):
            info = {**info, "rows": dict(ctx.shared.rows)}
        return Explanation(
            attributions=attr.detach(),
            method=self.name,
            target=targets,
            probabilities=probabilities,
            passes=ctx.passes if float(ctx.passes) != int(ctx.passes) else int(ctx.passes),
            options=dict(self.options),
            delta=None if delta is None else delta.detach(),
            seconds=time.perf_counter() - start,
            info=info,
            layer=layer,
            neuron=self.options.get("neuron") if self.category == "neuron" else None,
            logits=ctx.logits.detach(),
            inputs=x,
            preprocessing=preprocessing,
            class_names=getattr(model, "class_names", None) if not isinstance(model, nn.Module) else None,
        )


def _explained_for(ctx: Context, target: Target) -> T | Callable[[T], T]:
    """What the images were explained for: their classes, or the callable target (which resolves to none)."""
    if ctx.targets is not None:
        return ctx.targets
    assert callable(target)  # any other target resolves to classes
    return target


def check_run_options(batch_size: Any, seed: Any) -> None:
    """The two knobs every run takes: ``batch_size`` a positive int or None (automatic), ``seed`` an int."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise CnnlensError(f"batch_size must be a positive int or None (automatic); got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise CnnlensError(f"seed must be an int; got {seed!r}")


def unwrap(model: Classifier | nn.Module) -> tuple[nn.Module, Any]:
    """(nn.Module, preprocessing or None) from a Classifier or a module."""
    module = getattr(model, "module", None)
    if isinstance(module, nn.Module) and not isinstance(model, nn.Module):
        return original_module(module), getattr(model, "preprocessing", None)
    if isinstance(model, nn.Module):
        return original_module(model), None
    raise CnnlensError(
        f"model must be a torch.nn.Module returning logits or a cnnlens Classifier; got {type(model).__name__}"
    )


def _expected_channels(module: nn.Module) -> int | None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def check_inputs(module: nn.Module, inputs: Any, preprocessing: Any) -> T:
    if not isinstance(inputs, torch.Tensor):
        if preprocessing is None:
            raise CnnlensError(
                f"inputs must be a (B, C, H, W) float tensor; got {type(inputs).__name__}. Images (paths, PIL, "
                f"arrays) are accepted when the model is a cnnlens Classifier that knows its preprocessing"
            )
        inputs = preprocessing(inputs)
        device = model_device(module)
        if device is not None:
            inputs = inputs.to(device)
    elif preprocessing is not None and hasattr(preprocessing, "check_range"):
        preprocessing.check_range(inputs)  # a tensor normalised twice gets a warning
    if inputs.dim() == 3:
        raise CnnlensError(
            f"inputs have shape {tuple(inputs.shape)}; a batch (B, C, H, W) is needed — use x.unsqueeze(0) "
            f"for a single image"
        )
    if inputs.dim() != 4:
        raise CnnlensError(f"inputs must have shape (B, C, H, W); got {tuple(inputs.shape)}")
    if not inputs.dtype.is_floating_point:
        raise CnnlensError(
            f"inputs must be a float tensor (normalized as the model expects); got dtype {inputs.dtype}. "
            f"Use classifier.preprocess(images) or x.float() after your own normalization"
        )
    if inputs.shape[0] == 0:
        raise CnnlensError("inputs are an empty batch")
    channels = _expected_channels(module)
    if channels is not None and inputs.shape[1] != channels:
        raise CnnlensError(
            f"inputs have {inputs.shape[1]} channels but the model's first convolution expects {channels}"
        )
    device = model_device(module)
    if device is not None and device != inputs.device:
        raise CnnlensError(f"inputs are on {inputs.device} but the model is on {device}; move one of them")
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype is not None and dtype != inputs.dtype:
        raise CnnlensError(
            f"inputs are {inputs.dtype} but the model's parameters are {dtype}; convert one of them, e.g. x.to({dtype})"
        )
    if not torch.isfinite(inputs).all():
        raise CnnlensError("inputs contain NaN or infinite values")
    return inputs.detach()
