"""The pipeline every quality metric shares: checked inputs, fixed targets, an explainer that can be re-run,
batched target scores through the attribution engine's ``Context``, pass counting, a frozen model.

A metric is a small class that implements ``compute(job)`` only (see ``Metric``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

import torch
from torch import nn

from ..attribution import (
    Explanation,
    Method,
    check_inputs,
    check_run_options,
    explain,
    inputs_checked,
    unwrap,
)
from ..core.display import Displayable
from ..core.errors import CnnlensError
from ..core.model_checks import explaining
from ..core.model_guard import frozen
from ..core.options import Option, defaults, describe, validate
from ..core.progress import honours_progress, progress_bar
from ..engine import Context, Rows, Target, class_probabilities, class_scores

T = torch.Tensor
MethodSpec = str | Method | type[Method] | Explanation | Callable[..., T]


@dataclass
class Score(Displayable):
    """What one metric says about one method's explanations of a batch of inputs (in a notebook: its curves or
    values per image; ``.plot()``)."""

    metric: str
    method: str
    values: T
    """One number per image, ``(B,)`` (float64, CPU)."""
    higher_is_better: bool | None
    """``True`` / ``False``; ``None`` where the number is descriptive (e.g. detail, cost)."""
    curve: T | None = None
    """Per-image curve ``(B, n)`` for curve metrics (deletion, insertion, ROAD, randomization), else ``None``."""
    curve_x: T | None = None
    """The curve's x axis ``(n,)`` (fraction of pixels removed, layers randomized, ...)."""
    passes: float = 0
    """Model inputs evaluated by the metric, including explanations it recomputed (where known); a row computed
    by incremental inference counts as the fraction of a full pass's multiply-adds it cost."""
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    def plot(self) -> Any:
        """A Figure: the curves (one per image and their mean) of a curve metric, else the value per image."""
        from ..viz import score_figure

        return score_figure(self)

    def _summary(self) -> list[tuple[str, str]]:
        better = {True: "higher", False: "lower", None: "neither (descriptive)"}[self.higher_is_better]
        return [("metric", self.metric), ("method", self.method), ("mean", f"{self.mean:.4g}"),
                ("better", better), ("images", str(len(self.values))), ("passes", f"{self.passes:.6g}")]  # fmt: skip

    def __repr__(self) -> str:
        arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}[self.higher_is_better]
        return f"Score({self.metric} of {self.method}: mean {self.mean:.4g}{arrow}, {len(self.values)} image(s))"


class Explainer:
    """Explanations on demand: ``explainer(x, targets) -> (attributions, passes)`` for any ``MethodSpec``.

    A registry name, a ``Method`` class or instance, or a callable ``(model, inputs, target) -> attributions``
    can be re-run on new inputs (``rerunnable``); a fixed ``Explanation`` answers only for the inputs it was
    computed on.
    """

    def __init__(self, spec: MethodSpec, model: Any, batch_size: int | None, seed: int, options: dict) -> None:
        self.model = model
        self.batch_size = batch_size
        self.seed = seed
        self.fixed: Explanation | None = None
        # what reruns it (None: a fixed explanation); a callable's result is checked to be a tensor
        self.fn: str | Method | type[Method] | Callable[..., object] | None = None
        self.options = dict(options)
        self.last_delta: T | None = None
        """The ``delta`` of the last explanation (``None`` for callables and methods without one)."""
        if isinstance(spec, Explanation):
            self.fixed, self.name, self.fn = spec, spec.method, None
        elif isinstance(spec, str | Method):
            self.name = spec if isinstance(spec, str) else spec.name
            self.fn = spec
        elif isinstance(spec, type) and issubclass(spec, Method):
            self.name, self.fn = spec.name, spec
        elif callable(spec):
            self.name, self.fn = getattr(spec, "__name__", "callable"), spec
        else:
            raise CnnlensError(
                f"method must be a method name (see cnnlens.methods()), a Method, an Explanation or a callable "
                f"(model, inputs, target) -> attributions; got {type(spec).__name__}"
            )
        if self.fixed is not None and options:
            raise CnnlensError("method options cannot be applied to a finished Explanation; pass the method name")

    @property
    def rerunnable(self) -> bool:
        return self.fixed is None

    def __call__(self, x: T, targets: T, seed: int | None = None, model: Any = None) -> tuple[T, float]:
        """``model``: explain another model than ``self.model`` (e.g. a randomized copy); ``None``: the caller's."""
        if self.fixed is not None:
            self.last_delta = self.fixed.delta
            return self._fixed(x, targets), 0
        self.last_delta = None
        with inputs_checked():  # rows made from the metric's inputs, whose range was checked on entry
            return self._rerun(x, targets, seed, model)

    def _rerun(self, x: T, targets: T, seed: int | None, model: Any) -> tuple[T, float]:
        if isinstance(self.fn, str | Method | type):
            e = explain(
                self.model if model is None else model, x, self.fn, target=targets, batch_size=self.batch_size,
                seed=self.seed if seed is None else seed, **self.options,
            )  # fmt: skip
            self.last_delta = e.delta
            return e.attributions.detach(), e.passes
        assert self.fn is not None  # set whenever the explanation is not a fixed one
        with torch.enable_grad():
            a = self.fn(self.model if model is None else model, x, targets)
        if not isinstance(a, torch.Tensor):
            raise CnnlensError(f"the explainer {self.name!r} returned {type(a).__name__}, not a tensor")
        return _check_attribution_shape(a.detach(), x, self.name), 0

    def _fixed(self, x: T, targets: T) -> T:
        e = self.fixed
        assert e is not None
        a = e.attributions
        if a.shape[0] != x.shape[0] or a.shape[-2:] != x.shape[-2:]:
            raise CnnlensError(
                f"the Explanation has attributions of shape {tuple(a.shape)} but the inputs are {tuple(x.shape)}; "
                f"explain the same inputs, or pass the method name so the metric can run it"
            )
        if isinstance(e.target, torch.Tensor) and not torch.equal(e.target.to(targets.device), targets):
            raise CnnlensError(
                f"the Explanation explains classes {e.target.tolist()} but the metric's targets are "
                f"{targets.tolist()}; pass target= matching the explanation"
            )
        return a.to(x.device)


def _check_run_options(batch_size: Any, seed: Any, method_options: Any) -> None:
    check_run_options(batch_size, seed)
    if method_options is not None and not isinstance(method_options, Mapping):
        raise CnnlensError(f"method_options must be a dict of the method's options; got {method_options!r}")


def _check_attribution_shape(a: T, x: T, name: str) -> T:
    if a.dim() == 3:
        a = a[:, None]
    if a.dim() != 4 or a.shape[0] != x.shape[0] or a.shape[-2:] != x.shape[-2:] or a.shape[1] not in (1, x.shape[1]):
        raise CnnlensError(
            f"the explainer {name!r} returned shape {tuple(a.shape)} for inputs {tuple(x.shape)}; expected "
            f"(B, C, H, W) or (B, 1, H, W) with the inputs' B, H and W"
        )
    return a


class MetricRun:
    """One metric run: model, inputs, fixed integer targets, the explainer, batched scoring and pass counts."""

    def __init__(
        self, model: Any, module: nn.Module, preprocessing: Any, x: T, ctx: Context, explainer: Explainer,
        generator: torch.Generator,
    ) -> None:  # fmt: skip
        self.model = model  # what the caller gave (Classifier or module)
        self.module = module
        self.preprocessing = preprocessing
        self.inputs = x
        self.ctx = ctx
        self.explainer = explainer
        self.generator = generator
        self.explain_passes: float = 0
        self._attributions: T | None = None
        self._delta: T | None = None

    @property
    def n(self) -> int:
        return self.inputs.shape[0]

    @property
    def targets(self) -> T:
        """One class index per image (the predicted class unless ``target=`` was given)."""
        t = self.ctx.targets
        if t is None:
            raise CnnlensError("quality metrics need integer targets (an int or one per image), not a callable")
        return t

    @property
    def attributions(self) -> T:
        """The explanation of the inputs, computed once."""
        if self._attributions is None:
            self._attributions = self.explain(self.inputs)
            self._delta = self.explainer.last_delta
        return self._attributions

    @property
    def delta(self) -> T | None:
        """The method's completeness error for the inputs (``Explanation.delta``), ``None`` where it has none."""
        _ = self.attributions
        return self._delta

    def explain(self, x: T, seed: int | None = None, targets: T | None = None, model: Any = None) -> T:
        """The method's attributions for ``x`` (rows owned by the inputs in order), explaining ``self.targets``.

        ``targets``: other classes to explain (one per image); ``model``: explain another model (a Classifier or
        module, e.g. a randomized copy) instead of the caller's."""
        targets = self.targets if targets is None else targets
        if x.shape[0] != self.n or targets.shape != (self.n,):
            raise CnnlensError("internal: explain() takes one row and one target per input image")
        a, passes = self.explainer(x, targets, seed, model)
        self.explain_passes += passes
        return a

    def explain_rows(self, x: T, owner: T, seed: int | None = None) -> T:
        """Attributions for any number of rows in one call (row ``i`` explains image ``owner[i]``'s target)."""
        if not self.explainer.rerunnable:
            raise CnnlensError("internal: a finished Explanation cannot explain new inputs")
        a, passes = self.explainer(x, self.targets[owner], seed)
        self.explain_passes += passes
        return a

    @property
    def input_scores(self) -> T:
        """f(x): the target logit of every input (from the pass that resolved the targets, no new pass)."""
        return self.ctx.select(self.ctx.logits, self.owners())

    def scores(self, rows: T | Rows, owner: T, output: str = "logit", desc: str = "") -> T:
        """Target score of every row (row ``i`` explains image ``owner[i]``), batched with the shared knob.

        ``output``: ``"logit"`` or ``"probability"`` (softmax of the target). ``desc``: label of the progress
        bar (stderr) shown when the rows take longer than two seconds."""
        if output not in ("logit", "probability"):
            raise CnnlensError(f"output must be 'logit' or 'probability'; got {output!r}")
        ctx = self.ctx
        _ = self.targets  # resolved on the inputs' logits before any row is scored
        bar = progress_bar(total=rows.shape[0], desc=desc or "scoring", unit="img", delay=2.0, leave=False)

        def step(sl: slice) -> T:
            with torch.no_grad():
                logits, _ = ctx.evaluate(rows[sl], owner[sl])
            bar.update(sl.stop - sl.start)
            return self.output_scores(logits, owner[sl], output)

        try:
            parts = ctx.run(step, rows.shape[0])
        finally:
            bar.close()
        return torch.cat(parts) if parts else self.inputs.new_zeros(0)

    def output_scores(self, logits: T, owner: T, output: str = "logit") -> T:
        """The target's ``output`` (``"logit"`` or ``"probability"``: softmax) of each row of ``logits`` (N, K),
        row ``i`` explaining image ``owner[i]``. A one-logit model's class 1 is ``z`` (probability ``sigmoid(z)``),
        its class 0 is ``-z`` (probability ``sigmoid(-z)``)."""
        scores = class_probabilities(logits) if output == "probability" else class_scores(logits)
        return scores.gather(1, self.targets[owner][:, None])[:, 0]

    def owners(self, repeat: int = 1) -> T:
        return self.ctx.owners(repeat)

    @property
    def passes(self) -> float:
        return self.ctx.passes + self.explain_passes

    def randn(self, *shape: int) -> T:
        return torch.randn(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def rand(self, *shape: int) -> T:
        return torch.rand(*shape, generator=self.generator, device="cpu").to(self.inputs)


class Metric:
    """Base class: subclasses set the class attributes and implement ``compute``; ``__call__`` runs it all."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    higher_is_better: ClassVar[bool | None] = None
    params: ClassVar[dict[str, Option]] = {}
    """The metric's options, declared once (``cnnlens._options``)."""
    rerun: ClassVar[bool] = False
    """True when the metric re-explains perturbed inputs (needs a method name or callable, not an Explanation)."""
    kind: ClassVar[str] = "value"  # "value" or "curve"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name and cls.params:  # help(metric) lists the options with their defaults, rules and meaning
            cls.__doc__ = f"{cls.__dict__.get('__doc__') or cls.summary}\n\n{describe(cls.params)}"

    def __init__(self, **options: Any) -> None:
        self.options = validate(f"metric {self.name}", self.params, options)
        self.check_options()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{option: default}`` of the metric's options."""
        return defaults(cls.params)

    def check_options(self) -> None:
        """Check what the option declarations cannot (e.g. options that exclude each other); override to add."""

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Return ``(values (B,), curve (B, n) or None, curve_x (n,) or None, info)``."""
        raise NotImplementedError

    @final
    @honours_progress
    def __call__(
        self,
        model: Any,
        inputs: Any,
        method: MethodSpec,
        *,
        target: Target = None,
        batch_size: int | None = None,
        seed: int = 0,
        method_options: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> Score:
        start = time.perf_counter()
        module, preprocessing = unwrap(model)
        x = check_inputs(module, inputs, preprocessing)
        _check_run_options(batch_size, seed, method_options)
        if callable(target) and not isinstance(target, torch.Tensor):
            raise CnnlensError("quality metrics need integer targets (an int or one per image), not a callable")
        explainer = Explainer(method, model, batch_size, seed, method_options or {})
        if self.rerun and not explainer.rerunnable:
            raise CnnlensError(
                f"{self.name} re-explains changed inputs or models, so it needs the method (a name, a Method or a "
                f"callable), not a finished Explanation"
            )
        generator = torch.Generator().manual_seed(int(seed))
        with frozen(module), explaining(module):
            ctx = Context.create(module, x, target, batch_size, torch.Generator().manual_seed(int(seed)))
            job = MetricRun(model, module, preprocessing, x, ctx, explainer, generator)
            values, curve, curve_x, info = self.compute(job)
        return Score(
            metric=self.name,
            method=explainer.name,
            values=values.detach().double().cpu(),
            higher_is_better=self.higher_is_better,
            curve=None if curve is None else curve.detach().double().cpu(),
            curve_x=None if curve_x is None else curve_x.detach().double().cpu(),
            passes=job.passes,
            seconds=time.perf_counter() - start,
            options=dict(self.options),
            info=info,
        )
