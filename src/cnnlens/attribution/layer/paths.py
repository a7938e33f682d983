"""Path methods at a layer: layer integrated gradients, layer conductance, internal influence."""

from __future__ import annotations

import torch

from ...core.options import choice, integer, number
from ...engine import Context, Rows, sum_per_row
from ...models import State
from .._paths import PATH_OPTIONS, QUADRATURES, integrate, quadrature
from .._registry import register
from ..gradient.integrated_gradients import integrated_gradients
from ._base import LayerMethod

T = torch.Tensor


@register
class LayerIntegratedGradients(LayerMethod):
    name = "layer_integrated_gradients"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Integrated gradients at the layer, from its output on the baseline to that on the image (tail only)."
    params = {**LayerMethod.params, **PATH_OPTIONS}
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        """The path runs from ``a0`` (the layer's output for the baseline) to ``a`` (for the image), through the
        tail only; values that skip the layer come from the image, as in Captum's ``LayerIntegratedGradients``.
        ``delta`` compares the sum with ``F(a) - F(a0)``, the tail's own gap (``f(x) - f(baseline)`` when nothing
        skips the layer)."""
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        view = ctx.at_layer(layer)
        a0, _ = view.project(baseline)
        attr, delta = integrated_gradients(view, a0, self.options, self.name)
        ctx.info.update(view.info, activations=view.inputs)
        return attr, delta


@register
class InternalInfluence(LayerMethod):
    name = "internal_influence"
    invariances = frozenset({"shift", "negation", "batch"})
    summary = "Gradient w.r.t. the layer's output integrated along the input path from the baseline (no inputs x)."
    params = {
        **LayerMethod.params,
        "steps": integer(50, "path points (quadrature nodes) per image"),
        "quadrature": choice("gausslegendre", QUADRATURES, "how the path integral is approximated"),
    }
    needs_baseline = "single"

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """Leino et al. 2018: ``integral of d f / d layer(x0 + alpha (x - x0))`` over alpha."""
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        alphas, weights = quadrature(self.options["quadrature"], self.options["steps"])
        s, x = len(alphas), ctx.inputs
        a = torch.tensor(alphas, dtype=x.dtype, device=x.device).repeat(ctx.n).view(-1, *[1] * (x.dim() - 1))
        rows = baseline.repeat_interleave(s, 0) + a * (x - baseline).repeat_interleave(s, 0)
        grads = ctx.backward(rows, ctx.owners(s), layers=[layer], input_grad=False).layer_grads[0]
        w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(1, -1, *[1] * (grads.dim() - 1))
        return (grads.view(ctx.n, s, *grads.shape[1:]) * w).sum(1), None


@register
class LayerConductance(LayerMethod):
    name = "layer_conductance"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "Conductance: the score's flow through each unit along the input path (sums to f(x) - f(baseline))."
    params = {
        **LayerMethod.params,
        "points": integer(
            None,
            "points on the input path where the layer's output is computed (head passes); None: 2 where the tail "
            "acts on each unit separately (every path gives the same conductance), else 16",
            minimum=2,
            none=True,
        ),
        "steps": integer(64, "tail passes per image, Gauss-Legendre nodes spread over the segments between points"),
        "tolerance": number(
            0.01,
            "refine the tail's integrals until |delta| <= tolerance x |f(x) - f(baseline)| (None: fixed steps)",
            open_min=True,
            none=True,
        ),
        "max_passes": integer(2048, "adaptive mode: most tail passes per image", minimum=4),
    }
    needs_baseline = "single"
    has_delta = True

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T]:
        """Dhamdhere et al. 2018: ``cond_j = integral of d f / d y_j  d y_j`` along ``x(alpha) = x0 + alpha (x - x0)``.

        The layer's output ``y(alpha)`` is computed at ``points`` points of the input path (the head); between two
        points it is taken as the straight segment, along which the tail's gradient is integrated with ``steps``
        Gauss-Legendre nodes in all, refined where needed until the sum is within ``tolerance`` (values that skip
        the layer move along their own segments). The sum over units is ``f(x) - f(baseline)`` up to ``tolerance``
        whatever ``points`` is. Each unit's value converges as ``1 / points**2`` on smooth models (``1 / points``
        where ReLUs bend the path; not at all needed when the tail acts on each unit separately, as after the last
        convolution of most CNNs) and as ``1 / steps`` where a unit crosses a ReLU's kink in the tail.
        ``points=None`` takes 16, or 2 where the tail is ``sum over units u of phi_u(y_u)`` plus a constant
        (eval-mode BatchNorm and activations, then pooling and linear layers only, nothing skipping the layer: e.g.
        after the last convolution of EfficientNet-Lite, ResNet or VGG-style heads): then the tail's gradient at a
        unit depends on that unit alone, every path gives it ``phi_u(y_u(x)) - phi_u(y_u(x0))``, and the head needs
        to run at the two ends only (``info["points"]``, ``info["per_unit_tail"]``).
        ``info["passes_per_image"]``: tail passes per image (adaptive mode). Where values skip
        the layer (a residual connection around it), their share of the score's change is left out of the
        attributions: ``delta`` is minus that share (``tolerance`` applies to the total).
        """
        assert baseline is not None
        _, layer = self.target_layer(ctx)
        view = ctx.at_layer(layer)
        per_unit = ctx.shared.cut(layer).per_unit  # False on the hooked path
        n, b, x = self.options["points"], ctx.n, ctx.inputs
        n = n if n is not None else 2 if per_unit else 16
        mid = torch.linspace(0, 1, n, dtype=x.dtype, device=x.device)[1:-1]
        rows = baseline.repeat_interleave(n - 2, 0) + mid.repeat(b).view(-1, *[1] * (x.dim() - 1)) * (
            x - baseline
        ).repeat_interleave(n - 2, 0)
        a0, s0 = view.project(baseline)
        am, sm = view.project(rows) if n > 2 else (a0[:0], s0[:0])
        image = torch.arange(b, device=x.device)
        inner = b + image[:, None] * (n - 2) + torch.arange(n - 2, device=x.device)[None]
        order = torch.cat([image[:, None], inner, (b * (n - 1) + image)[:, None]], 1).flatten()
        acts = torch.cat([a0, am, view.inputs])[order]
        states = State.cat([s0, sm, view.state]).take(order)  # type: ignore[list-item]
        scores = view.scores(acts, image.repeat_interleave(n), state=states).view(b, n)
        first = (image[:, None] * n + torch.arange(n - 1, device=x.device)[None]).flatten()
        starts, ends = states.take(first), states.take(first + 1)

        moving = [(lo, hi) for lo, hi, k in zip(starts.values, ends.values, starts.kinds, strict=True) if k == "rows"]

        def gradients(points: Rows, path: T, alpha: T) -> tuple[T, T]:
            """The tail's gradient at the layer, and the flow through values that skip the layer."""
            state = starts.take(path).lerp(ends.take(path), alpha)
            g = view.backward(points, path // (n - 1), state=state)
            extra = sum(
                (d * (hi - lo)[path]).flatten(1).sum(1) for d, (lo, hi) in zip(g.state_grads, moving, strict=True)
            )
            return g.grad, extra + torch.zeros_like(g.scores)  # type: ignore[return-value]

        tol, steps = self.options["tolerance"], self.options["steps"]
        options = {
            "steps": steps if tol is not None else max(1, steps // (n - 1)),  # adaptive: spread over the segments
            "quadrature": "gausslegendre",
            "tolerance": tol,
            "max_passes": self.options["max_passes"],
        }
        gap = scores[:, -1] - scores[:, 0]
        group = image.repeat_interleave(n - 1)
        flows, info = integrate(gradients, acts[first], acts[first + 1], gap, options, group, self.name)
        attr = flows.view(b, n - 1, *flows.shape[1:]).sum(1)
        ctx.info.update(info, activations=view.inputs, points=n, per_unit_tail=per_unit)
        return attr, sum_per_row(attr) - gap
