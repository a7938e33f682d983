"""Numerical checks of one relevance pass: overflow, finite explosion, a vanished start, a score below the rules'
stabilizers, relevance lost on the way. Each raises or warns with the cause and what to do."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ...core.errors import CnnlensError, CnnlensWarning

T = torch.Tensor
EXPLOSION = 1e6
"""A relevance whose total ``sum |R|`` exceeds this many times the initial relevance's ``sum |R0|`` is refused: no
rule of a composite redistributes the score that way (measured on EfficientNet-Lite0: α2β1 reaches 12 times, the
ε-rule with biases 113 times; γ with ``zero_bias=True`` 10^32 times)."""


class DegenerateRelevanceWarning(CnnlensWarning):
    """The explained score or the relevance is numerically degenerate (lost below float precision or absorbed by
    the rules' stabilizers): the map is empty or nearly so for a numerical reason, not because nothing matters."""


def check_relevance(method: str, r: T, starts: T, logits: T, options: dict[str, Any]) -> None:
    """Refuse an overflowing or exploding relevance ``r`` ``(B, ...)``; warn where the initial relevance ``starts``
    ``(B, K)`` vanished, the ``logits`` ``(B, K)`` are below the stabilizers, or ``r`` is all zero while the start
    is not."""
    if not torch.isfinite(r).all():
        raise CnnlensError(
            f"{method}: the relevance overflowed (inf or NaN): rules divided by outputs close to 0 layer after "
            f"layer. With zero_bias=True on a model that has biases, the epsilon-rule divides by outputs without "
            f"their bias, which vanish where the bias made the activation; keep the biases (zero_bias=False), "
            f"raise epsilon (e.g. 0.25), or use a composite with z+ or gamma rules"
        )
    total = r.detach().flatten(1).double().abs().sum(1)
    start = starts.detach().double().abs().sum(1)
    ratio = torch.where(start > 0, total / start.clamp(min=1e-300), 0.0)
    if bool((ratio > EXPLOSION).any()):
        raise CnnlensError(_explosion(method, float(total.max()), float(ratio.max()), options))
    notes = []
    tiny = torch.finfo(torch.float32).tiny  # float16 relevance underflows to 0 below its own range
    vanished = start < tiny
    if bool(vanished.any()):
        notes.append(_vanished(method, vanished, logits))
    scale = logits.detach().abs().amax(1)
    floor = max(float(options["epsilon"]), float(options["stabilizer"]))
    absorbed = ~vanished & (scale < floor) if method != "sglrp" else torch.zeros_like(vanished)
    if bool(absorbed.any()):
        low = float(scale[absorbed].min())
        notes.append(
            f"the model's outputs are below the rules' stabilizers (largest |logit| {low:.3g} < {floor:g}, the "
            f"epsilon/stabilizer every rule adds to its denominators), so the relevance is absorbed, not "
            f"redistributed (rows {_rows(absorbed)}); lower epsilon and stabilizer far below the outputs' scale "
            f"(e.g. epsilon=stabilizer={max(low * 1e-6, 1e-30):.0e}) or explain a model whose outputs have a normal scale"
        )
    lost = ~vanished & ~absorbed & (total < tiny) & (not options.get("cut"))  # a layer may get none: a gate's branch
    if bool(lost.any()):
        notes.append(
            f"the relevance reached no input although the initial relevance is not 0 (rows {_rows(lost)}): every "
            f"unit on the way dropped it (e.g. z+ rules where no contribution is positive, dead ReLUs); try the "
            f"epsilon composite"
        )
    if notes:
        warnings.warn(f"{method}: " + "; ".join(notes), DegenerateRelevanceWarning, stacklevel=2)


def _rows(mask: T) -> str:
    return ", ".join(str(i) for i in mask.nonzero()[:, 0].tolist()[:8]) + ("..." if int(mask.sum()) > 8 else "")


def _vanished(method: str, rows: T, logits: T) -> str:
    if method == "sglrp":
        top = logits.detach().double().topk(min(2, logits.shape[1]), dim=1).values
        gap = float((top[:, 0] - top[:, -1])[rows].min())
        return (
            f"the softmax saturates (rows {_rows(rows)}): the target's probability is 1 to float precision (the logit "
            f"gap to the runner-up is {gap:.3g}), so its gradient, the initial relevance of SGLRP, underflows to 0 "
            f"and so does the map. Explain the logit with lrp, contrast the classes with clrp, or divide the "
            f"logits by a temperature (wrap the model) so that the probabilities stay below 1"
        )
    return (
        f"the explained score is 0 or below float precision (rows {_rows(rows)}): there is no relevance to "
        f"redistribute and the map is 0. Explain another target, or a model whose outputs have a normal scale"
    )


def _explosion(method: str, total: float, ratio: float, options: dict[str, Any]) -> str:
    composite = options["composite"]
    uses = (lambda n: composite.uses(n)) if hasattr(composite, "uses") else (lambda n: False)
    cause = "rules divided by outputs close to 0 layer after layer"
    if options["zero_bias"] and (uses("gamma") or uses("zbox") or uses("epsilon")):
        cause += (
            ". With zero_bias=True on a model that has biases (or folded BatchNorm shifts), the gamma, z^B and "
            "epsilon rules divide by outputs without their bias, which vanish or change sign where the bias made "
            "the activation; keep the biases (zero_bias=False), or use a z+ composite (epsilon_plus_flat, "
            "epsilon_plus) with zero_bias"
        )
    else:
        cause += "; raise the stabilizer and epsilon (e.g. 0.25), or use a z+ composite (epsilon_plus_flat)"
    return (
        f"{method}: the relevance exploded: its total |R| is {total:.3g}, {ratio:.3g} times the initial relevance "
        f"(more than {EXPLOSION:g} times is no redistribution of the score): {cause}"
    )
