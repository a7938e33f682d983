"""Claims that survive their uncertainty: a method is "best", two methods "agree" or "differ", only when the
difference is larger than twice its standard error over the images (and seeds, when several were run); methods
that are the same computation are found and named once.

Uncertainty. Per-image values come as ``(N,)`` (one seed) or ``(S, N)`` (S seeds x N images). For two methods
compared on the same images, the difference is taken image by image (paired); its standard error is
``sqrt(var_i / N + var_s / S)``: ``var_i`` the variance over images of the per-image differences (averaged over
the seeds), ``var_s`` the variance over seeds of the mean differences (0 with one seed). With one image and one
seed there is no uncertainty to measure, so nothing is claimed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..core.errors import CnnlensError
from ._notes import method_name

Z = 2.0
"""A difference is claimed when it exceeds ``Z`` standard errors (about 95% confidence for a normal mean)."""


def _grid(values: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.size == 0:
        raise CnnlensError(f"per-image values must be (images,) or (seeds, images); got shape {a.shape}")
    return a


class Paired(NamedTuple):
    """A paired difference ``a - b`` over images (and seeds): its mean, its standard error and how many images and
    seeds it was measured on."""

    difference: float
    error: float
    images: int
    seeds: int


def paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> Paired:
    """(mean of a - b, its standard error, images, seeds) over the images where both are finite (module doc);
    the error is ``inf`` when it cannot be measured (one image and one seed)."""
    x, y = _grid(a), _grid(b)
    if x.shape != y.shape:
        raise CnnlensError(f"compare values of the same images and seeds; got shapes {x.shape} and {y.shape}")
    d = (x - y)[:, np.isfinite(x - y).all(axis=0)]
    seeds, images = d.shape
    if images == 0:
        return Paired(math.nan, math.inf, 0, seeds)
    per_image, per_seed = d.mean(axis=0), d.mean(axis=1)
    var = 0.0 if images < 2 else per_image.var(ddof=1) / images
    var += 0.0 if seeds < 2 else per_seed.var(ddof=1) / seeds
    unmeasured = images < 2 and seeds < 2
    return Paired(float(per_image.mean()), math.inf if unmeasured else math.sqrt(var), images, seeds)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


@dataclass(frozen=True)
class Lead:
    """The best method of a column and how far ahead of the next it is."""

    leader: str
    runner_up: str | None
    leader_value: float
    runner_up_value: float
    difference: float
    error: float
    images: int
    seeds: int

    @property
    def clear(self) -> bool:
        """Whether the lead is larger than ``Z`` standard errors (a single method always leads clearly)."""
        if self.runner_up is None:
            return True
        return bool(math.isfinite(self.error) and abs(self.difference) > Z * self.error)


def lead(values: Mapping[str, Sequence[float] | np.ndarray], higher_is_better: bool) -> Lead | None:
    """The leader (best mean) of ``values`` (method -> per-image values, see module doc) and its lead over the
    runner-up, paired image by image; ``None`` when no method has a value."""
    grids = {m: _grid(v) for m, v in values.items()}
    means = {m: _mean(g) for m, g in grids.items() if not math.isnan(_mean(g))}
    if not means:
        return None
    ranked = sorted(means, key=lambda m: -means[m] if higher_is_better else means[m])
    best = ranked[0]
    if len(ranked) == 1:
        seeds, images = grids[best].shape
        return Lead(
            leader=best, runner_up=None, leader_value=means[best], runner_up_value=math.nan, difference=math.nan,
            error=math.nan, images=images, seeds=seeds,
        )  # fmt: skip
    second = ranked[1]
    gap = paired(grids[best], grids[second])
    return Lead(
        leader=best, runner_up=second, leader_value=means[best], runner_up_value=means[second],
        difference=gap.difference, error=gap.error, images=gap.images, seeds=gap.seeds,
    )  # fmt: skip


def _value(v: float) -> str:
    return f"{v:.3g}"


def _column(column: str) -> str:
    return column.replace("_", " ")


def best_note(column: str, values: Mapping[str, Sequence[float] | np.ndarray], higher_is_better: bool) -> str | None:
    """One sentence: which method does best on ``column``, or that none is clearly best (module doc)."""
    found = lead(values, higher_is_better)
    if found is None:
        return None
    better = "higher" if higher_is_better else "lower"
    if found.runner_up is None:
        return f"On {_column(column)} ({better} is better) only {method_name(found.leader)} has a value."
    a, b = method_name(found.leader), method_name(found.runner_up)
    if found.clear:
        return (
            f"On {_column(column)} ({better} is better) {a} does best: {_value(found.leader_value)} against "
            f"{_value(found.runner_up_value)} for {b}, the next (ahead by {_value(abs(found.difference))} "
            f"± {_value(found.error)})."
        )
    spread = "cannot be measured on one image" if math.isinf(found.error) else f"± {_value(found.error)}"
    return (
        f"On {_column(column)} no method is clearly best: {a} ({_value(found.leader_value)}) and {b} "
        f"({_value(found.runner_up_value)}) differ by less than twice their uncertainty ({spread})."
    )


def how_measured(images: int, seeds: int = 1) -> str:
    """The sentence that says how the ± of the notes was measured."""
    over = f"{images} image{'s' if images != 1 else ''}" + (f" and {seeds} seeds" if seeds > 1 else "")
    return (
        f"± is the standard error of the difference between two methods, image by image, over {over}; a method "
        f"is called best (or two methods said to agree or differ) only when the difference is more than {Z:g} "
        "times that."
    )


def agreement_claims(
    per_image: Mapping[tuple[str, str], Sequence[float] | np.ndarray],
    fraction: float,
    families: Mapping[str, str] | None = None,
) -> list[str]:
    """Sentences on the most and the least agreeing pairs of methods (share of the top-``fraction`` pixels in
    common, per image), each claimed only beyond its uncertainty: "agree" when the share is above chance
    (``fraction``) by more than ``Z`` standard errors, "differ" when it is not above chance. With ``families``
    the most agreeing pair is sought among methods of different families (relatives agree by construction)."""
    if not per_image:
        return []
    grids = {pair: _grid(v) for pair, v in per_image.items()}
    means = {pair: _mean(g) for pair, g in grids.items()}
    ranked = sorted(means, key=lambda p: -means[p])

    def apart(a: str, b: str) -> bool:
        return families is not None and None not in (families.get(a), families.get(b)) and families[a] != families[b]

    def names(pair: tuple[str, str]) -> str:
        return " and ".join(method_name(m) for m in pair)

    def above_chance(pair: tuple[str, str]) -> tuple[bool, float]:
        gap = paired(grids[pair], np.full_like(grids[pair], fraction))
        return bool(math.isfinite(gap.error) and gap.difference > Z * gap.error), gap.error

    pool = [p for p in ranked if apart(*p)] if families is not None else ranked
    pool = pool or ranked
    top = pool[0]
    ties = [p for p in pool[1:3] if not _clearly_apart(grids[top], grids[p])]
    said = []
    agree, error = above_chance(top)
    chance = f"chance: {fraction:.0%}"
    spread = "" if math.isinf(error) else f" (± {100 * error:.0f} points)"
    kind = "Of methods from different families, " if families is not None and apart(*top) else ""
    if agree:
        others = f" (within the uncertainty, so do {'; '.join(names(p) for p in ties)})" if ties else ""
        said.append(
            f"{kind}{names(top)} agree most{others}: {100 * means[top]:.0f}%{spread} of their top {fraction:.0%} "
            f"pixels are the same ({chance})."
        )
    else:
        said.append(
            f"No two methods agree clearly more than chance: the closest, {names(top)}, share "
            f"{100 * means[top]:.0f}%{spread} of their top {fraction:.0%} pixels ({chance})."
        )
    low = ranked[-1]
    if len(ranked) > 1 and low != top:
        low_agree, low_error = above_chance(low)
        spread = "" if math.isinf(low_error) else f" (± {100 * low_error:.0f} points)"
        if low_agree:
            said.append(
                f"Even the least agreeing pair, {names(low)}, shares {100 * means[low]:.0f}%{spread} of its top "
                f"pixels, more than chance ({fraction:.0%})."
            )
        else:
            said.append(
                f"{names(low)[0].upper()}{names(low)[1:]} differ most: {100 * means[low]:.0f}%{spread} of their top "
                f"{fraction:.0%} pixels in common, no more than chance would give."
            )
    return said


def _clearly_apart(a: np.ndarray, b: np.ndarray) -> bool:
    gap = paired(a, b)
    return bool(math.isfinite(gap.error) and abs(gap.difference) > Z * gap.error)


def same_computation(maps: Mapping[str, np.ndarray], rtol: float = 1e-5) -> list[list[str]]:
    """Groups (in the order given) of methods whose maps are identical on every image: the same computation
    under two names (e.g. occlusion with window = stride = s and feature ablation on an s-pixel grid). Maps are
    compared after summing their channels, within ``rtol`` of the largest value."""
    reduced = {}
    for m, a in maps.items():
        a = np.asarray(a, dtype=np.float64)
        reduced[m] = a.sum(axis=1) if a.ndim == 4 else a
    groups: list[list[str]] = []
    for m, a in reduced.items():
        for g in groups:
            b = reduced[g[0]]
            scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-30)
            if a.shape == b.shape and float(np.abs(a - b).max(initial=0.0)) <= rtol * scale:
                g.append(m)
                break
        else:
            groups.append([m])
    return [g for g in groups if len(g) > 1]


def merged_name(group: Sequence[str]) -> str:
    """``occlusion = feature ablation``: one name for methods that are the same computation."""
    return " = ".join(method_name(m) for m in group)
