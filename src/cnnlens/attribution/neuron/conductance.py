"""Neuron conductance: the class score's flow through one neuron, attributed to the input pixels."""

from __future__ import annotations

import torch

from ...core.hooks import capture
from ...core.model_checks import gradient_cut, gradient_forward
from ...core.options import choice, integer
from ...engine import Context, Neuron
from .._layers import resolve_layer
from .._paths import QUADRATURES, quadrature
from .._registry import register
from ._base import NeuronMethod

T = torch.Tensor


@register
class NeuronConductance(NeuronMethod):
    name = "neuron_conductance"
    invariances = frozenset({"shift", "negation", "baseline_zero", "batch"})
    summary = "The target score's flow through the neuron, per input value (sums over pixels to its conductance)."
    params = {
        **NeuronMethod.params,
        "steps": integer(50, "path points (quadrature nodes) per image"),
        "quadrature": choice("gausslegendre", QUADRATURES, "how the path integral is approximated"),
    }
    needs_baseline = "single"
    explains_class = True  # the class score, followed through the neuron

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        """Dhamdhere et al. 2018 (Captum's ``NeuronConductance``): ``(x_i - x0_i) integral of d f / d y_j  d y_j /
        d x_i`` along ``x0 + alpha (x - x0)``, for the unit ``j`` (a channel: the sum over its units, the score's
        flow through the whole channel). Summed over the input it is the unit's layer conductance."""
        assert baseline is not None
        name, layer = resolve_layer(ctx, self.options["layer"])
        ctx.info["layer"] = name
        neuron = Neuron(name, self.options["neuron"])
        alphas, weights = quadrature(self.options["quadrature"], self.options["steps"])
        s, x = len(alphas), ctx.inputs
        a = torch.tensor(alphas, dtype=x.dtype, device=x.device).repeat(ctx.n).view(-1, *[1] * (x.dim() - 1))
        rows = baseline.repeat_interleave(s, 0) + a * (x - baseline).repeat_interleave(s, 0)
        owner = ctx.owners(s)
        _ = ctx.targets

        def step(sl: slice) -> T:
            xi = rows[sl].detach().requires_grad_(True)
            with torch.enable_grad():
                with gradient_forward(ctx.model, xi), capture([layer], names=[name]) as outs:
                    _, score = ctx.evaluate(xi, owner[sl])
                if not score.requires_grad:  # the model's forward cuts the gradient: say how
                    raise gradient_cut(ctx.model, xi)
                (g,) = torch.autograd.grad(score.sum(), outs, retain_graph=True)
                flow = (g * neuron.units(outs[0])).detach()
                (gx,) = torch.autograd.grad((flow * outs[0]).sum(), xi)
            return gx

        grads = torch.cat(ctx.run(step, rows.shape[0])).view(ctx.n, s, *x.shape[1:])
        w = torch.tensor(weights, dtype=x.dtype, device=x.device).view(1, -1, *[1] * (x.dim() - 1))
        return (x - baseline) * (grads * w).sum(1), None
