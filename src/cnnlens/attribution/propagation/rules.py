"""LRP rules for convolutions and fully connected layers: how a layer's output relevance goes to its inputs.

A rule sees one layer call ``z = W x + b`` (a ``Layer``), its input ``x``, its output ``z`` and the relevance
``R`` of every output, and returns the relevance of every input. Writing ``s = R / stab(z')`` for the rule's
denominator ``z'`` (``stab`` adds the stabilizer with the sign of ``z'``, + for 0) and ``W^T s`` for the
layer's vector-Jacobian product:

=================  ==============================================================================================
rule               input relevance
=================  ==============================================================================================
``Epsilon``        ``x * W^T s``, ``z' = W x + b`` (LRP-0 as ε -> 0; ε absorbs weak, contradictory outputs)
``Gamma``          positive outputs: ``x+ * (W + γW+)^T s + x- * (W + γW-)^T s`` over the matching ``z'``;
                   negative outputs mirrored (the generalized γ-rule; γ = 0 is LRP-0, γ -> ∞ tends to z+)
``AlphaBeta``      ``α`` × positive contributions - ``β`` × negative ones, each normalized by its own sum
                   (``x+ W+ + x- W-`` and ``x+ W- + x- W+``); α - β = 1 keeps the total
``ZPlus``          ``AlphaBeta(1, 0)``: positive contributions only (z+ of deep Taylor decomposition)
``ZBox``           ``x * W^T s - l * W+^T s - h * W-^T s``, ``z' = W x - W+ l - W- h``: z^B for inputs in a box
                   ``[l, h]`` (pixel layers); the bias never enters
``Flat``           every input of an output's receptive field gets an equal share (weights and input ignored)
``WSquare``        shares proportional to ``W²`` (the input ignored)
``Pass``           ``R`` unchanged (shape-preserving layers only)
=================  ==============================================================================================

Each one conserves relevance (the inputs get exactly what the outputs had) when the bias is left out
(``zero_bias``, or rules that ignore it) and the stabilizer is negligible; with a bias, the bias keeps its share.
References: Bach et al. 2015 (ε, αβ), Montavon et al. 2017 (z+, z^B, w²), Montavon et al. 2019 (γ),
Lapuschkin et al. 2019 (flat), Andéol et al. 2021 (generalized γ).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeAlias

import torch

from ...core.errors import CnnlensError
from ._layer import LinearCall

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Bound: TypeAlias = float | Sequence[float] | torch.Tensor
    """An input bound of z^B: one number, or one per channel."""

T = torch.Tensor


def stabilize(z: T, eps: float) -> T:
    """``z + eps * sign(z)`` with the sign of 0 taken as +1: a denominator that is never 0."""
    return torch.where(z >= 0, z + eps, z - eps)


@dataclass(frozen=True)
class Rule:
    """Base of the rules. ``None`` fields take the method's options (``epsilon``, ``gamma``, ``stabilizer``,
    ``zero_bias``) when the rule is used."""

    name: ClassVar[str] = ""
    stabilizer: float | None = field(default=None, kw_only=True)
    zero_bias: bool | None = field(default=None, kw_only=True)

    def bind(self, options: dict[str, Any]) -> Self:
        """A copy with every ``None`` field set from ``options``."""
        unset = [f.name for f in fields(self) if getattr(self, f.name) is None and f.name in options]
        return replace(self, **{k: options[k] for k in unset})

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        """Relevance of ``x`` (the layer's input) from ``r``, the relevance of ``z`` (the layer's output, given
        when ``uses_output``)."""
        raise NotImplementedError

    def uses_output(self, layer: LinearCall) -> bool:
        """Whether ``relevance`` needs the layer's output ``z`` as the forward pass computed it."""
        return False

    def __str__(self) -> str:
        return self.name

    def _bias(self, layer: LinearCall) -> T | None:
        return None if self.zero_bias else layer.bias

    def _divide(self, r: T, z: T) -> T:
        assert self.stabilizer is not None
        return r / stabilize(z, self.stabilizer)


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015): ``R_i = x_i sum_j w_ij R_j / (z_j + ε sign z_j)``; LRP-0 as ε -> 0."""

    name: ClassVar[str] = "epsilon"
    epsilon: float | None = None

    def uses_output(self, layer: LinearCall) -> bool:
        return not layer.folded and (layer.bias is None or not self.zero_bias)

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        if z is None:  # the forward pass ran unfolded, or with the bias
            z = layer.forward(x, layer.weight, self._bias(layer))
        assert self.epsilon is not None
        return x * layer.transpose(r / stabilize(z, self.epsilon), x, layer.weight)

    def __str__(self) -> str:
        return f"epsilon({self.epsilon:g})"


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-γ (Montavon et al. 2019), generalized to inputs and outputs of either sign (Andéol et al. 2021):
    contributions of the output's own sign are boosted by ``γ``."""

    name: ClassVar[str] = "gamma"
    gamma: float | None = None

    def uses_output(self, layer: LinearCall) -> bool:
        return True  # its sign picks the branch

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        g, w, b = self.gamma, layer.weight, self._bias(layer)
        assert g is not None and z is not None
        up, down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)  # boosted toward + and toward -
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_down = None if b is None else b + g * b.clamp(max=0)
        out = torch.zeros_like(x)
        for sign, w_same, w_other, b_same in ((1, up, down, b_up), (-1, down, up, b_down)):
            mask = z > 0 if sign > 0 else z < 0
            if not bool(mask.any()):
                continue
            out = out + _split_by_sign(layer, x, r * mask, w_same, w_other, b_same, self._divide)
        return out

    def __str__(self) -> str:
        return f"gamma({self.gamma:g})"


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015): ``α`` times the positive contributions minus ``β`` times the negative ones,
    each normalized by its own sum. ``α - β = 1`` is required (the total relevance is kept)."""

    name: ClassVar[str] = "alpha_beta"
    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise CnnlensError(
                f"the alpha-beta rule needs beta >= 0 and alpha - beta = 1 (so that relevance is conserved); "
                f"got alpha={self.alpha}, beta={self.beta}. E.g. AlphaBeta(2, 1) or AlphaBeta(1, 0)"
            )

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        w, b = layer.weight, self._bias(layer)
        pos, neg = w.clamp(min=0), w.clamp(max=0)
        b_pos = None if b is None else b.clamp(min=0)
        out = self.alpha * _split_by_sign(layer, x, r, pos, neg, b_pos, self._divide)
        if self.beta:
            b_neg = None if b is None else b.clamp(max=0)
            out = out - self.beta * _split_by_sign(layer, x, r, neg, pos, b_neg, self._divide)
        return out

    def __str__(self) -> str:
        return f"alpha{self.alpha:g}_beta{self.beta:g}"


@dataclass(frozen=True)
class ZPlus(AlphaBeta):
    """z+ (Montavon et al. 2017): only positive contributions ``x_i w_ij > 0`` share the relevance; the same as
    ``AlphaBeta(1, 0)`` (a positive bias keeps its share unless ``zero_bias``)."""

    name: ClassVar[str] = "zplus"
    alpha: float = 1.0
    beta: float = 0.0

    def __str__(self) -> str:
        return "zplus"


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B (Montavon et al. 2017) for inputs known to lie in ``[low, high]``: numbers or one per channel.
    ``None`` bounds: the model's normalization of [0, 1] pixels (a cnnlens Classifier) or the ``bounds`` option."""

    name: ClassVar[str] = "zbox"
    low: Bound | None = None
    high: Bound | None = None

    def bind(self, options: dict[str, Any]) -> Self:
        bound = super().bind(options)
        if bound.low is None or bound.high is None:
            box = options.get("box")
            if box is None:
                raise CnnlensError(
                    "the z^B rule (zbox) needs the range of the input values: explain a cnnlens Classifier "
                    "(its normalization of [0, 1] pixels gives it), pass bounds=(low, high), or use "
                    "ZBox(low, high) in the composite"
                )
            bound = replace(bound, low=box[0], high=box[1])
        return bound

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        low, high = _box(self.low, x), _box(self.high, x)
        w = layer.weight
        pos, neg = w.clamp(min=0), w.clamp(max=0)
        zb = layer.forward(x, w) - layer.forward(low, pos) - layer.forward(high, neg)
        s = self._divide(r, zb)
        return x * layer.transpose(s, x, w) - low * layer.transpose(s, x, pos) - high * layer.transpose(s, x, neg)


@dataclass(frozen=True)
class Flat(Rule):
    """Flat (Lapuschkin et al. 2019): each output's relevance spread equally over its receptive field."""

    name: ClassVar[str] = "flat"

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        ones = torch.ones_like(layer.weight)
        s = self._divide(r, layer.forward(torch.ones_like(x), ones))
        return layer.transpose(s, x, ones)


@dataclass(frozen=True)
class WSquare(Rule):
    """w² (Montavon et al. 2017): shares proportional to the squared weights, whatever the input."""

    name: ClassVar[str] = "wsquare"

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        b = self._bias(layer)
        w2 = layer.weight * layer.weight
        s = self._divide(r, layer.forward(torch.ones_like(x), w2, None if b is None else b * b))
        return layer.transpose(s, x, w2)


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passes unchanged (for layers whose output has the input's shape)."""

    name: ClassVar[str] = "pass"

    def relevance(self, layer: LinearCall, x: T, z: T | None, r: T) -> T:
        if r.shape != x.shape:
            raise CnnlensError(
                f"the pass rule needs a layer whose output has its input's shape; {layer.name} maps "
                f"{tuple(x.shape)} to {tuple(r.shape)}"
            )
        return r


def box_elsewhere(method: str, name: str, cut: bool) -> CnnlensError:
    """The error for a z^B rule without bounds of its own at a layer other than the one the input enters."""
    why = " (layer_lrp's relevance pass starts at a hidden layer and never reaches it)" if cut else ""
    return CnnlensError(
        f"{method}: the z^B rule at {name} needs the range of that layer's inputs; the bounds (bounds= or the "
        f"Classifier's normalization) are the model input's and apply only at the first layer, the one the input "
        f"enters{why}. Give ZBox(low, high) for {name!r} in the composite, or another rule there"
    )


def _split_by_sign(
    layer: LinearCall, x: T, r: T, w_pos_in: T, w_neg_in: T, b: T | None, divide: Callable[[T, T], T]
) -> T:
    """Relevance ``r`` shared over the contributions ``x+ w_pos_in + x- w_neg_in (+ b)``, in proportion."""
    has_neg = bool((x < 0).any())
    xp = x.clamp(min=0) if has_neg else x
    xn = x.clamp(max=0) if has_neg else None
    z = layer.forward(xp, w_pos_in, b)
    if xn is not None:
        z = z + layer.forward(xn, w_neg_in)
    s = divide(r, z)
    out = xp * layer.transpose(s, x, w_pos_in)
    if xn is not None:
        out = out + xn * layer.transpose(s, x, w_neg_in)
    return out


def _box(bound: Bound | None, x: T) -> T:
    t = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    if t.dim() == 1 and x.dim() > 2:  # one value per channel
        t = t.view(1, -1, *[1] * (x.dim() - 2))
    return t.expand_as(x)


RULES: dict[str, Rule] = {
    "epsilon": Epsilon(),
    "gamma": Gamma(),
    "zplus": ZPlus(),
    "alpha1_beta0": AlphaBeta(1.0, 0.0),
    "alpha2_beta1": AlphaBeta(2.0, 1.0),
    "zbox": ZBox(),
    "flat": Flat(),
    "wsquare": WSquare(),
    "pass": Pass(),
}
"""Rules by name, as composites give them (parameters from the method's options)."""
