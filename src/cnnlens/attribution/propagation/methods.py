"""LRP, softmax-gradient LRP, contrastive LRP and LRP at a layer: one relevance pass each, different starts.

Relevance starts at the logits (the *initial relevance*), goes backward through every operation by its rule
(``_mode``) and arrives at the inputs (or at a layer). Only the start differs between the methods:

* ``lrp`` (Bach et al. 2015): the explained score itself, ``R_k = z_k dS/dz_k`` (the target logit for a class).
* ``sglrp`` (Iwana et al. 2019): the gradient of the target's softmax probability, ``R_k = dp_t/dz_k =
  p_t (1[k = t] - p_k)``: the target gets ``p_t (1 - p_t)``, every other class ``-p_t p_k``. It sums to 0, so the
  map contrasts the target against the classes that compete with it.
* ``clrp`` (Gu et al. 2018, their first variant, CLRP1): the target's relevance minus that of a *dual virtual
  class* made of all other classes, each weighted by ``|z_k|`` and scaled to carry the target's score; the map
  keeps the positive part, ``max(0, R_target - R_dual)``: what speaks for the target and not for the others.
  (The second variant, CLRP2, negates the target's last-layer weights; with the ε-rule there it gives the
  target's own map back, so it depends on the last layer's rule and is not offered.)
* ``layer_lrp``: ``lrp`` stopped at a layer's output, ``(B, C, h, w)`` like that output.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from ...core.errors import CnnlensError
from ...core.options import flag, number, value
from ...engine import Context
from .._base import Method
from .._layers import LAYER
from .._registry import register
from ..layer._base import LayerMethod
from ._checks import DegenerateRelevanceWarning, check_relevance
from ._mode import RelevanceMode
from .composites import Composite

T = torch.Tensor


def _is_bounds(v: Any) -> bool:
    if v is None:
        return True
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        return False
    low, high = (torch.as_tensor(b, dtype=torch.float64) for b in v)
    return low.dim() <= 1 and high.dim() <= 1 and bool(torch.isfinite(low).all() and (high > low).all())


PARAMS = {
    "composite": value(
        "epsilon_plus_flat",
        "which rule each convolution and fully connected layer gets",
        "a composite name (epsilon_plus_flat, epsilon_gamma_box, epsilon_alpha2_beta1, epsilon_plus, epsilon) "
        "or a mapping {'first' / 'conv' / 'linear' / module type / layer name: rule}",
        lambda v: isinstance(v, (str, Mapping)),
    ),
    "epsilon": number(1e-6, "ε of the ε-rule (LRP-0 as ε -> 0)", open_min=True),
    "gamma": number(0.25, "γ of the γ-rule (0: LRP-0; large: z+)"),
    "stabilizer": number(1e-6, "added with its sign to the denominators of the other rules and of sums", open_min=True),
    "zero_bias": flag(False, "leave biases and folded BatchNorm shifts out of the rules (they then take no relevance)"),
    "bounds": value(
        None,
        "the z^B box of the values entering the first layer (None: [0, 1] pixels through a Classifier's normalization)",
        "None or (low, high), each a number or one per channel, low < high",
        _is_bounds,
    ),
}


class _Relevance(Method):
    """One relevance pass from ``start`` (the subclass's initial relevance) to the inputs or a layer."""

    category = "propagation"
    params = PARAMS

    def check_options(self) -> None:
        Composite.of(self.options["composite"])

    def resolve_baseline(self, spec: Any, inputs: T, preprocessing: Any) -> T | None:
        """No baseline; ``compute`` receives the z^B box per image, ``(B, 2, C)`` (low, high), or ``None``."""
        if spec is not None:
            raise CnnlensError(f"{self.name} does not use a baseline; remove baseline=")
        bounds, c = self.options["bounds"], inputs.shape[1]
        if bounds is not None:
            low, high = (torch.as_tensor(b, dtype=inputs.dtype).to(inputs.device).expand(c) for b in bounds)
        elif preprocessing is not None and hasattr(preprocessing, "pixel_value") and c == 3:
            low, high = (preprocessing.pixel_value(v).to(inputs) for v in (0.0, 1.0))
        else:
            return None
        return torch.stack([low, high]).expand(inputs.shape[0], 2, c)

    def start(self, logits: T, g0: T) -> T:
        """The initial relevance ``(N, K)`` from the logits and the gradient of the explained score."""
        raise NotImplementedError

    def relevance(self, ctx: Context, box: T | None, layers: Sequence[Any] = ()) -> T:
        """The relevance of the inputs, or of the one layer's output. ``info``: ``"rules"`` (the rule of every
        operation, in the order they ran) and ``"initial_relevance"`` ``(B, K)``, what the inputs' relevance sums
        to where it is conserved (no biases, or ``zero_bias=True`` on a model without them).

        Raises ``CnnlensError`` when the relevance overflows or explodes (``sum |R|`` more than ``_checks.EXPLOSION``
        times ``sum |R0|``); warns ``DegenerateRelevanceWarning`` when it is numerically degenerate (``_checks``)."""
        opts = {**self.options, "box": None if box is None else box[0], "cut": bool(layers)}
        starts: list[T] = []
        logits: list[T] = []

        def start(z: T, g0: T) -> T:
            r = self.start(z, g0)
            starts.append(r.detach())
            logits.append(z.detach())
            return r

        composite = Composite.of(self.options["composite"])
        mode = RelevanceMode(self.name, ctx.model, composite, opts, start)
        b = ctx.backward(ctx.inputs, ctx.owners(), mode, layers=layers, input_grad=not layers)
        rel, outputs, at_layers = b.grad, b.outputs, b.layer_grads
        if layers:
            ctx.info["activations"] = outputs[0]  # the layer's output, whose units the relevance belongs to
        ctx.info["rules"] = mode.records
        ctx.info["initial_relevance"] = torch.cat(starts)
        r = at_layers[0] if layers else rel
        assert r is not None
        check_relevance(
            self.name, r, ctx.info["initial_relevance"], torch.cat(logits), {**opts, "composite": composite}
        )
        return r

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        return self.relevance(ctx, baseline), None


@register
class Lrp(_Relevance):
    """Layer-wise relevance propagation (Bach et al. 2015) with the rules of a composite (Montavon et al. 2019;
    Kohlbrenner et al. 2020), on any CNN: rules apply wherever an operation runs (functional residual adds,
    reused and in-place modules), BatchNorm is folded into its convolution for the call. Attributions
    ``(B, C, H, W)``; they sum to the explained score where relevance is conserved (no biases, or biases left out
    by ``zero_bias=True`` on a model without them); otherwise biases keep their share. ``info["rules"]`` lists the
    rule of every layer."""

    name = "lrp"
    invariances = frozenset({"negation", "batch"})
    summary = "Layer-wise relevance propagation: the score redistributed layer by layer by a composite's rules."

    def start(self, logits: T, g0: T) -> T:
        return logits * g0


@register
class Sglrp(_Relevance):
    """Softmax-gradient LRP (Iwana, Kuroki and Uchida 2019): LRP started from the gradient of the target's
    softmax probability w.r.t. the logits, so the relevance sums to 0 and separates the target from the
    classes competing with it (the map sums to 0 where relevance is conserved). Where the softmax saturates (the
    target's probability is 1 to float precision) that gradient underflows and the map is 0: a
    ``DegenerateRelevanceWarning`` says so (explain the logit with ``lrp`` instead)."""

    name = "sglrp"
    invariances = frozenset({"batch"})
    summary = "Softmax-gradient LRP: LRP started from d softmax_t / d logits, contrasting the target with the rest."

    def start(self, logits: T, g0: T) -> T:
        """``p_k (g0_k - sum_j p_j g0_j)``, the softmax Jacobian times dS/dz, written with ``m`` the most probable
        class as ``p_k ((g0_k - g0_m) + sum_j p_j (g0_m - g0_j))`` in float64: no ``1 - p_t`` that rounds to 0
        when the softmax saturates (the small probabilities are summed directly). One logit ``z`` (two classes,
        ``-z`` and ``z``): ``dp_t/dz = g0 sigmoid(z) sigmoid(-z)``, the sigmoid pair's Jacobian."""
        if logits.shape[1] == 1:
            z = logits.double()
            return (g0.double() * torch.sigmoid(z) * torch.sigmoid(-z)).to(logits.dtype)
        p = torch.softmax(logits.double(), dim=1)
        g = g0.double()
        gm = g.gather(1, p.argmax(1, keepdim=True))
        return (p * ((g - gm) + (p * (gm - g)).sum(1, keepdim=True))).to(logits.dtype)


@register
class Clrp(_Relevance):
    """Contrastive LRP (Gu, Yang and Tresp 2018), variant CLRP1: ``max(0, R_target - R_dual)`` where the dual
    virtual class is every other class, weighted by ``|z_k|`` and scaled to the target's score. One relevance
    pass (relevance is linear in its start)."""

    name = "clrp"
    invariances = frozenset({"batch"})
    summary = "Contrastive LRP (CLRP1): target relevance minus that of all other classes, positive part."

    def start(self, logits: T, g0: T) -> T:
        target = logits * g0
        dual = logits.abs() * (g0 == 0)
        total = dual.sum(1, keepdim=True)
        scale = torch.where(total > 0, target.sum(1, keepdim=True) / total.clamp(min=1e-30), 0.0)
        return target - dual * scale

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        r = self.relevance(ctx, baseline)
        empty = [i for i in range(len(r)) if bool((r[i] <= 0).all()) and bool(r[i].ne(0).any())]
        if empty:
            warnings.warn(
                f"clrp's map is empty for rows {empty[:10]}: the target's relevance is no larger than the other "
                "classes' (the dual) at any pixel, so its positive part is 0. Here the contrast says nothing "
                "supports the target over the rest; lrp shows where its own score comes from",
                DegenerateRelevanceWarning,
                stacklevel=4,
            )
        return r.clamp(min=0), None


@register
class LayerLrp(LayerMethod, Lrp):
    """LRP stopped at one layer: the relevance of every unit of its output, ``(B, C, h, w)`` like that output
    (the input of concept relevance); ``info["layer"]`` names the layer, ``info["activations"]`` holds its output.
    A BatchNorm right after the layer is not
    folded into it (it passes relevance), so the layer's output is where the relevance is read. The composite's
    ``"first"`` rule (z^B, flat) belongs to the layer the input enters, which this pass never reaches: every layer
    after the chosen one gets its kind's rule."""

    name = "layer_lrp"
    invariances = frozenset({"negation", "batch"})
    summary = "LRP relevance of every unit of a layer's output, shaped like that output."
    params: ClassVar = {"layer": LAYER, **PARAMS}

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, None]:
        _, module = self.target_layer(ctx)
        return self.relevance(ctx, baseline, [module]), None
