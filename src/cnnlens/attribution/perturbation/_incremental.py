"""Scores of images changed inside small boxes, by incremental inference where it applies (exact), else full passes.

Occlusion and feature ablation change one box of an image at a time. Where the model traces to primitive
operations (:mod:`cnnlens.models._incremental`), each changed copy is computed only where its change can reach,
from one clean run per image. ``info["inference"]`` says which path ran (``"incremental"``, ``"approximate"`` or
``"full"``) and ``info["inference_reason"]`` why incremental inference was not used. Passes are counted honestly:
one per clean run and per check row, and for each changed copy the fraction of a full forward pass's
multiply-adds (of convolutions and linear layers) it cost (``info["multiply_adds"]``: the mean fraction).

Before its results are used, the traced graph is checked on every image (its clean logits) and on one changed
copy (against a full forward pass of the model); a mismatch falls back to full passes and says so.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...core.options import Option, choice
from ...core.progress import progress_bar
from ...engine import Context, check_logits
from ...models import Incremental, Untraceable

T = torch.Tensor
Inside = Callable[[T, T, T, int, int], T]  # (rows, y, x, h, w) -> (n, 1, h, w) bool: the changed pixels
_CHUNK = 8  # changed copies per incremental batch (on a CPU larger batches fall out of cache: 8 ran fastest on Lite0)
MIN_COPIES = 16
_GROWTH = 2.0  # largest box area in one batch, as a multiple of its smallest


def incremental_option(approximate: bool = False) -> Option:
    """The ``incremental=`` option of the methods that change one box at a time."""
    names = ("exact", "approximate", "off") if approximate else ("exact", "off")
    more = "; 'approximate': Krypton's projective-field threshold and two-stage drill-down" if approximate else ""
    return choice(
        "exact",
        names,
        "recompute only what each change can reach (exact, where the model traces); 'off': full forward passes" + more,
    )


def engine(ctx: Context, setting: str, copies: int, minimum: int = MIN_COPIES) -> Incremental | None:
    """The model traced for incremental inference, or ``None`` (``ctx.info`` then says why); ``copies``: changed
    copies per image (below ``minimum`` the clean run and the check would cost more than they save)."""
    reason = None
    if setting == "off":
        reason = "turned off (incremental='off')"
    elif copies < minimum:
        reason = f"{copies} changed copies per image: incremental inference pays off from {minimum}"
    elif ctx.layer is not None:
        reason = "attributions at a layer run the rest of the network, not the model"
    elif ctx.neuron is not None:
        reason = "a neuron is explained, not the model's output"
    elif ctx.inputs.dim() != 4:
        reason = "the inputs are not (batch, channels, height, width) images"
    if reason is None:
        found = ctx.shared.cache.get("incremental")
        if found is None:
            try:
                found = Incremental(ctx.model)
            except Untraceable as err:
                found = str(err)
            ctx.shared.cache["incremental"] = found
        if isinstance(found, Incremental):
            return found
        reason = found
    full(ctx, reason)
    return None


def full(ctx: Context, reason: str) -> None:
    """Record that full forward passes ran, and why."""
    ctx.info.update(inference="full", inference_reason=reason)
    ctx.info.pop("multiply_adds", None)


def crop(image: T, y: T, x: T, h: int, w: int) -> T:
    """``image`` (C, H, W) cut at rows ``y`` / columns ``x`` (N,) to (N, C, h, w)."""
    iy = y[:, None] + torch.arange(h, device=y.device)
    ix = x[:, None] + torch.arange(w, device=x.device)
    return image[:, iy[:, :, None], ix[:, None, :]].permute(1, 0, 2, 3)


def _close(a: T, b: T) -> bool:
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(b.abs().max()))))


def changed_scores(
    ctx: Context,
    eng: Incremental,
    base: T,
    owner: T,
    boxes: T,
    inside: Inside,
    desc: str = "",
    field: float | None = None,
    label: str = "incremental",
    *,
    clean: T | None = None,
    reference: T | None = None,
    score: Callable[[T, T], T] | None = None,
    max_fraction: float | None = None,
) -> T | None:
    """Explained scores of rows: image ``owner[r]`` with its pixels ``inside`` box ``boxes[r]`` (top, bottom,
    left, right) taken from ``base`` (B, C, H, W). ``field``: approximate mode's projective-field threshold;
    ``label``: the path ``info["inference"]`` names. ``None`` when the traced graph does not reproduce the model
    (then ``ctx.info`` says so).

    ``clean``: the images the rows change (B, C, H, W; default the inputs) and ``reference`` their logits from
    the model (default the inputs' logits), against which each clean run is checked; ``score``: ``(logits,
    owner) -> scores`` (default the explained score). Each image's rows run in batches of boxes of similar area,
    smallest first; with ``max_fraction``, once a batch costs more than that fraction of a full pass's
    multiply-adds, the image's larger rows are left out (NaN) for the caller to run whole."""
    x = ctx.inputs if clean is None else clean
    reference = ctx.logits if reference is None else reference
    score = ctx.select if score is None else score
    height, width = x.shape[2:]
    _ = ctx.target_scores()
    out, cost, done = x.new_full((len(owner),), float("nan")), 0.0, 0
    size = ctx.batch_size or _CHUNK
    own = ctx.bar is None  # explain()'s bar counts the passes already (here fractions): give it a total
    bar = progress_bar(total=len(owner), desc=desc, unit="img", delay=2.0, leave=False) if own else ctx.bar
    if not own:
        bar.total = bar.n + len(owner)
    try:
        for i in owner.unique().tolist():
            with torch.no_grad():
                clean_run = eng.clean(x[i : i + 1])
            ctx.count(1)
            if not _close(clean_run.logits[0], reference[i]):
                full(ctx, "the traced graph's logits differ from the model's")
                return None
            for b, rows in enumerate(_batches((owner == i).nonzero()[:, 0], boxes, size)):
                bx = boxes[rows]
                h, w = int((bx[:, 1] - bx[:, 0]).max()), int((bx[:, 3] - bx[:, 2]).max())
                y, left = bx[:, 0].clamp(max=height - h), bx[:, 2].clamp(max=width - w)
                patch = torch.where(
                    inside(rows, y, left, h, w), crop(base[i], y, left, h, w), crop(x[i], y, left, h, w)
                )
                with torch.no_grad():
                    logits, frac = eng.run(clean_run, patch, y, left, bx, field)
                    first = logits[:1] if field is None else None
                    if b == 0 and not _checked(ctx, eng, clean_run, x[i], patch, y, left, bx, first):
                        full(ctx, "incremental inference differs from a full forward pass on this model")
                        return None
                out[rows] = score(check_logits(logits, len(rows)), owner[rows])
                ctx.count(frac * len(rows))  # type: ignore[arg-type]
                cost, done = cost + frac * len(rows), done + len(rows)
                if own:
                    bar.update(len(rows))
                if max_fraction is not None and frac > max_fraction:
                    break
    finally:
        if own:
            bar.close()
    ctx.info.update(inference=label, multiply_adds=cost / max(done, 1))
    ctx.info.pop("inference_reason", None)
    return out


def _batches(idx: T, boxes: T, size: int) -> list[T]:
    """Rows ``idx`` in batches of at most ``size``, smallest box first, a new batch wherever the box area grows
    more than :data:`_GROWTH` times the batch's first (a batch computes every row at its largest box)."""
    bx = boxes[idx]
    area = ((bx[:, 1] - bx[:, 0]) * (bx[:, 3] - bx[:, 2])).tolist()
    order = sorted(range(len(area)), key=area.__getitem__)
    out: list[list[int]] = []
    for r in order:
        if not out or len(out[-1]) == size or area[r] > _GROWTH * area[out[-1][0]]:
            out.append([])
        out[-1].append(r)
    return [idx[torch.tensor(b, device=idx.device)] for b in out]


def _checked(
    ctx: Context, eng: Incremental, clean: object, image: T, patch: T, y: T, x: T, boxes: T, logits: T | None
) -> bool:
    """Whether the first row, computed incrementally (exact; ``logits`` when already computed so), equals a full
    forward pass of the model."""
    frac = 0.0
    if logits is None:
        logits, frac = eng.run(clean, patch[:1], y[:1], x[:1], boxes[:1])  # type: ignore[arg-type]
    row = image[None].clone()
    h, w = patch.shape[2:]
    row[:, :, int(y[0]) : int(y[0]) + h, int(x[0]) : int(x[0]) + w] = patch[:1]
    ref = ctx.model(row)
    ctx.count(1 + frac)  # type: ignore[arg-type]
    return isinstance(ref, torch.Tensor) and ref.shape == logits.shape and _close(logits, ref)


def window_inside(boxes: T) -> Inside:
    """The :data:`Inside` of rows that change a whole box (``boxes``: (rows, 4) top, bottom, left, right)."""

    def inside(rows: T, y: T, x: T, h: int, w: int) -> T:
        bx = boxes[rows]
        iy = y[:, None] + torch.arange(h, device=y.device)
        ix = x[:, None] + torch.arange(w, device=x.device)
        in_y = (iy >= bx[:, :1]) & (iy < bx[:, 1:2])
        in_x = (ix >= bx[:, 2:3]) & (ix < bx[:, 3:4])
        return (in_y[:, :, None] & in_x[:, None, :])[:, None]

    return inside
