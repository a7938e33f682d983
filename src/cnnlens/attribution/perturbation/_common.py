"""Plumbing shared by the perturbation methods: lazily built perturbations scored in batches, segment methods.

Every model evaluation goes through ``ctx.run``: perturbed images are built chunk by chunk (never all at once),
at most ``batch_size`` per forward pass, and counted in ``ctx.passes``. A progress bar (stderr) appears when a
run takes longer than two seconds.

Baselines: every perturbation method takes a baseline distribution (``baseline=`` a name, a tensor, or a list
of them); with several baselines the method runs once per baseline and the attributions are averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, overload

import torch

from ...core.errors import CnnlensError
from ...core.options import Option, value
from ...core.progress import progress_bar
from ...engine import Context
from .._base import Method
from .._baselines import inpaint_baseline
from .._masks import ALGORITHMS, MaskSpec, feature_masks, paint

if TYPE_CHECKING:
    from ...models import Preprocessing
    from .._baselines import BaselineSpec

T = torch.Tensor


@overload
def scores(
    ctx: Context, n_rows: int, build: Callable[[slice], T], owner: T, desc: str = "", classes: None = None
) -> T: ...
@overload
def scores(ctx: Context, n_rows: int, build: Callable[[slice], T], owner: T, desc: str, classes: T) -> tuple[T, T]: ...
@overload
def scores(
    ctx: Context, n_rows: int, build: Callable[[slice], T], owner: T, desc: str, classes: T | None
) -> T | tuple[T, T]: ...


def scores(
    ctx: Context, n_rows: int, build: Callable[[slice], T], owner: T, desc: str = "", classes: T | None = None
) -> T | tuple[T, T]:
    """Target scores of ``n_rows`` perturbed images, ``build(slice)`` making only the rows of one chunk.

    ``classes`` (``(B, k)`` class indices per image): also return the ``(n_rows, k)`` logits of the row's
    owner's classes, from the same passes (then the result is the pair)."""
    _ = ctx.target_scores()  # resolve the targets (the inputs' own pass) before perturbing
    k = 0 if classes is None else classes.shape[1]
    if n_rows == 0:
        empty = ctx.inputs.new_zeros(0)
        return empty if classes is None else (empty, ctx.inputs.new_zeros(0, k))
    own = ctx.bar is None  # explain()'s bar counts the passes already: give it a total instead of a second bar
    bar = progress_bar(total=n_rows, desc=desc, unit="img", delay=2.0, leave=False) if own else ctx.bar
    if not own:
        bar.total = bar.n + n_rows

    def step(sl: slice) -> tuple[T, T | None]:
        with torch.no_grad():
            logits, s = ctx.evaluate(build(sl), owner[sl])
        if own:
            bar.update(sl.stop - sl.start)
        extra = None if classes is None else logits.gather(1, classes[owner[sl]])
        return s, extra

    try:
        parts = ctx.run(step, n_rows)
    finally:
        if own:
            bar.close()
    out = torch.cat([p[0] for p in parts])
    return out if classes is None else (out, torch.cat([p[1] for p in parts]))


@overload
def coalition_scores(
    ctx: Context, x: T, base: T, labels: T, z: T, owner: T, desc: str = "", classes: None = None
) -> T: ...
@overload
def coalition_scores(ctx: Context, x: T, base: T, labels: T, z: T, owner: T, desc: str, classes: T) -> tuple[T, T]: ...
@overload
def coalition_scores(
    ctx: Context, x: T, base: T, labels: T, z: T, owner: T, desc: str, classes: T | None
) -> T | tuple[T, T]: ...


def coalition_scores(
    ctx: Context, x: T, base: T, labels: T, z: T, owner: T, desc: str = "", classes: T | None = None
) -> T | tuple[T, T]:
    """Scores of images whose segments are kept where ``z`` (rows ``(N, S)`` bool) is true, else the baseline
    (``classes``: see ``scores``)."""

    def build(sl: slice) -> T:
        o = owner[sl]
        keep = z[sl].gather(1, labels[o].flatten(1)).view(-1, 1, *labels.shape[1:])
        return torch.where(keep, x[o], base[o])

    return scores(ctx, z.shape[0], build, owner, desc, classes)


def mask_option(default: str) -> Option:
    """The ``mask=`` option of segment methods (checked where the masks are built)."""
    return value(
        default,
        "the segments whose values are attributed: a grid, superpixels, or your own labels",
        f"a name ({', '.join(ALGORITHMS)}, e.g. 'grid:16' or 'slic:50'), an integer (H, W) or (B, H, W) tensor, "
        "or one per image",
    )


class SegmentMethod(Method):
    """A method that scores segments of a feature mask; subclasses implement ``values``.

    Attributions map segment values to pixels in one of two ways (``spread``): ``False`` puts the segment's
    value at every pixel and channel of the segment (Captum's convention: the map shows the value directly);
    ``True`` divides it over the segment's pixels and channels, so that ``attributions.sum()`` per image is the
    sum of the segment values (the convention of the Shapley methods, whose values sum to f(x) - f(baseline)).
    Either way ``info["segment_values"]`` holds the ``(B, S)`` values and ``info["masks"]`` the ``(B, H, W)``
    labels (``S`` is the largest segment count; unused columns are 0).
    """

    category: ClassVar[str] = "perturbation"
    needs_baseline: ClassVar[str | None] = "distribution"
    spread: ClassVar[bool] = False

    def inpaint_mask(self) -> MaskSpec:
        """The segments ``baseline="inpaint"`` fills one at a time (the method's own feature mask)."""
        return self.options.get("mask", "grid:16")

    def resolve_baseline(self, spec: BaselineSpec, inputs: T, preprocessing: Preprocessing | None) -> T | None:
        """Baselines ``(B, K, C, H, W)``; ``"inpaint"`` (alone or in a list) fills each segment of the method's
        mask by biharmonic inpainting from the rest of the image."""
        parent = super().resolve_baseline
        items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if not any(isinstance(s, str) and s == "inpaint" for s in items) or self.needs_baseline is None:
            return parent(spec, inputs, preprocessing)
        parts = []
        for s in items:
            inpaint = isinstance(s, str) and s == "inpaint"
            part = (
                inpaint_baseline(inputs, self.inpaint_mask())[:, None] if inpaint else parent(s, inputs, preprocessing)
            )
            if part is None:  # a method that takes a baseline always resolves one
                raise CnnlensError(f"{self.name} could not resolve the baseline {s!r}")
            parts.append(part)
        return torch.cat(parts, dim=1)

    def values(self, ctx: Context, x: T, base: T, labels: T, counts: list[int], fx: T) -> tuple[T, T | None]:
        """``((B, S) segment values, f(baseline) per image or None)`` for one baseline."""
        raise NotImplementedError

    def values_without_baseline(self, ctx: Context, x: T, labels: T, counts: list[int], fx: T) -> tuple[T, T | None]:
        """The same for a method that takes no baseline (``needs_baseline = None``)."""
        raise NotImplementedError

    def compute(self, ctx: Context, baseline: T | None) -> tuple[T, T | None]:
        x = ctx.inputs
        fallback: list[str | None] = []
        labels, counts = feature_masks(self.options["mask"], x, fallback)
        fx = ctx.target_scores()
        bases: list[T | None] = [None] if baseline is None else list(baseline.unbind(1))
        total, fb_sum = None, torch.zeros_like(fx)
        for base in bases:
            if base is None:
                v, fb = self.values_without_baseline(ctx, x, labels, counts, fx)
            else:
                v, fb = self.values(ctx, x, base, labels, counts, fx)
            total = v if total is None else total + v
            if fb is not None:
                fb_sum = fb_sum + fb
        assert total is not None
        v = total / len(bases)
        ctx.info.update(segment_values=v, masks=labels, segments=counts)
        if any(fallback):  # a superpixel segmentation with too few segments was replaced (see attribution._masks)
            ctx.info["mask_fallback"] = fallback
        attr = paint(v, labels, x.shape[1], spread=self.spread)
        if not self.has_delta:
            return attr, None
        return attr, v.sum(1) - (fx - fb_sum / len(bases))


def top_segments(info: dict[str, Any], k: int = 5, positive: bool = True) -> T:
    """LIME's views: ``(B, H, W)`` bool, true on the ``k`` segments with the largest (``positive``) or most
    negative values of an explanation's ``info`` (``e.info`` of any segment method); only segments whose
    value has that sign are shown."""
    v, labels = info["segment_values"], info["masks"]
    signed = v if positive else -v
    signed = torch.where(signed > 0, signed, torch.full_like(signed, -torch.inf))
    order = signed.argsort(1, descending=True)[:, :k]
    chosen = torch.zeros_like(v, dtype=torch.bool).scatter_(1, order, True) & torch.isfinite(signed)
    return chosen.gather(1, labels.flatten(1)).view(labels.shape)
