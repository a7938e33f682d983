"""Quality metrics: infidelity, sensitivity_max and completeness.

``infidelity`` and ``sensitivity_max`` follow Yeh et al. 2019 ("On the (In)fidelity and Sensitivity of
Explanations") with Captum's conventions (``captum.metrics``): given the same perturbations they return the
same numbers. Random draws come from the job's seeded generator, so a seed fixes the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.errors import CnnlensError
from ..core.options import flag, integer, number, value
from ..core.progress import progress_bar
from ._base import Metric, MetricRun
from ._registry import register_metric

T = torch.Tensor
Perturbation = Callable[[T, torch.Generator], T]
_ROWS_PER_CALL = 32  # perturbed images built (and scored or re-explained) per group of samples


PERTURBATION = value(
    None,
    "a callable (inputs, generator) -> perturbed inputs, called once per sample (None: the default noise)",
    "None or a callable",
    lambda v: v is None or callable(v),
)


def _perturbed(job: MetricRun, fn: Perturbation) -> T:
    """One perturbed copy of the inputs from ``fn(inputs, generator)``, checked."""
    x = job.inputs
    xp = fn(x, job.generator)
    if not isinstance(xp, torch.Tensor) or xp.shape != x.shape:
        raise CnnlensError(
            f"the perturbation must return a tensor shaped like the inputs {tuple(x.shape)}; "
            f"got {getattr(xp, 'shape', type(xp).__name__)}"
        )
    return xp.detach().to(x)


def _groups(samples: int, n: int) -> list[int]:
    """Sample counts per group so that each group holds about ``_ROWS_PER_CALL`` images."""
    g = max(1, _ROWS_PER_CALL // max(n, 1))
    return [min(g, samples - s) for s in range(0, samples, g)]


@register_metric
class Infidelity(Metric):
    """Yeh et al.'s infidelity: mean squared error between ``I . attr`` and ``f(x) - f(x - I)``."""

    name = "infidelity"
    summary = "squared error of attributions . perturbation against the score change it causes (Yeh et al. 2019)"
    higher_is_better = False
    params = {
        "samples": integer(10, "perturbations per image"),
        "std": number(0.2, "std of the Gaussian noise, in input units"),
        "perturbation": PERTURBATION,
        "normalize": flag(True, "scale the attributions by the least-squares factor (Captum's normalize=True)"),
    }

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Per image: ``mean_s (beta * sum(attr * I_s) - (f(x) - f(x - I_s)))**2`` with ``I_s = x - x~_s``.

        Default perturbation: ``x~ = x - N(0, std**2)`` per input value (``std`` in the model's input space;
        0.2 is the noise scale of the authors' code). ``perturbation``: a callable ``(inputs, generator) ->
        perturbed inputs`` called once per sample. ``normalize``: ``beta`` is the least-squares scale
        ``sum_s a_s b_s / sum_s a_s**2`` (Captum's ``normalize=True``; the value no longer depends on the
        attributions' scale); otherwise ``beta = 1``. Map attributions (one channel) weight every channel.
        """
        o = self.options
        x, n, attr = job.inputs, job.n, job.attributions
        std = float(o["std"])
        fn: Perturbation = o["perturbation"] or (
            lambda inp, g: inp - std * torch.randn(inp.shape, generator=g, device="cpu").to(inp)
        )
        fx = job.input_scores
        dots, diffs = [], []
        bar = progress_bar(total=o["samples"], desc="infidelity", unit="sample", delay=2.0, leave=False)
        try:
            for g in _groups(o["samples"], n):
                xps = [_perturbed(job, fn) for _ in range(g)]
                dots += [(attr * (x - xp)).flatten(1).sum(1) for xp in xps]
                owner = job.owners().repeat(g)
                fxp = job.scores(torch.cat(xps), owner, desc="infidelity").view(g, n)
                diffs += list(fx[None] - fxp)
                bar.update(g)
        finally:
            bar.close()
        a = torch.stack(dots).double()  # (S, B)
        b = torch.stack(diffs).double()
        info: dict[str, Any] = {}
        if o["normalize"]:
            aa, ab = (a * a).sum(0), (a * b).sum(0)
            beta = torch.where(aa != 0, ab / torch.where(aa != 0, aa, 1.0), ab)  # Captum's safe_div
            a = beta[None] * a
            info["beta"] = beta
        return ((a - b) ** 2).mean(0), None, None, info


@register_metric
class SensitivityMax(Metric):
    """Yeh et al.'s max-sensitivity: largest relative change of the explanation under small input noise."""

    name = "sensitivity_max"
    summary = "largest relative change of the attributions when the input moves within a small L-inf ball"
    higher_is_better = False
    params = {
        "samples": integer(10, "perturbations per image"),
        "radius": number(0.02, "half-width of the uniform noise (L-inf ball), in input units"),
        "perturbation": PERTURBATION,
    }
    rerun = True

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Per image: ``max_s ||attr(x~_s) - attr(x)||_F / ||attr(x)||_F`` (a zero norm counts as 1, as Captum).

        Default perturbation: ``x~ = x + U(-radius, radius)`` per input value (Captum's default, ``radius``
        in the model's input space); ``perturbation``: a callable ``(inputs, generator) -> perturbed inputs``
        called once per sample. Perturbed inputs are re-explained (same targets and seed), several samples
        per call of the method.
        """
        o = self.options
        x, n, attr = job.inputs, job.n, job.attributions
        r = float(o["radius"])
        fn: Perturbation = o["perturbation"] or (
            lambda inp, g: inp + (2 * torch.rand(inp.shape, generator=g, device="cpu").to(inp) - 1) * r
        )
        norm = attr.flatten(1).norm(dim=1)
        norm = torch.where(norm == 0, torch.ones_like(norm), norm)
        worst = torch.full((n,), -torch.inf, dtype=torch.float64, device=x.device)
        bar = progress_bar(total=o["samples"], desc="sensitivity_max", unit="sample", delay=2.0, leave=False)
        try:
            for g in _groups(o["samples"], n):
                xps = torch.cat([_perturbed(job, fn) for _ in range(g)])
                owner = job.owners().repeat(g)
                ap = job.explain_rows(xps, owner)
                if ap.shape[1:] != attr.shape[1:]:
                    raise CnnlensError(
                        f"the method returned attributions of shape {tuple(ap.shape[1:])} per image for the "
                        f"perturbed inputs but {tuple(attr.shape[1:])} for the inputs"
                    )
                sens = (ap - attr[owner]).flatten(1).norm(dim=1) / norm[owner]
                worst = torch.maximum(worst, sens.double().view(g, n).max(0).values)
                bar.update(g)
        finally:
            bar.close()
        return worst, None, None, {}


@register_metric
class Completeness(Metric):
    """How far the attributions are from adding up to ``f(x) - f(baseline)``, relative to that difference."""

    name = "completeness"
    summary = "|sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)|, for methods that report a delta"
    higher_is_better = False

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Per image ``|delta| / |sum(attr) - delta|`` from the method's own ``Explanation.delta``
        (``delta = sum(attr) - (f(x) - f(baseline))``, so the denominator is ``|f(x) - f(baseline)|``).

        NaN where ``f(x) == f(baseline)``. Methods without a delta (or a callable explainer) raise an error
        naming the methods that have one.
        """
        attr = job.attributions
        delta = job.delta
        if delta is None:
            from ..attribution import methods

            have = ", ".join(m.name for m in methods() if m.has_delta)
            raise CnnlensError(
                f"completeness needs the completeness error (delta) a method reports; {job.explainer.name!r} "
                f"gave none. Methods with a delta: {have} (gradient_shap only with stdev=0)"
            )
        total = attr.flatten(1).sum(1).double()
        d = delta.to(total)
        diff = total - d  # f(x) - f(baseline)
        value = torch.where(diff != 0, d.abs() / diff.abs(), torch.full_like(d, torch.nan))
        return value, None, None, {"delta": d, "difference": diff}
