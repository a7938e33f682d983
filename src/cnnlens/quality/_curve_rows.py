"""Deletion and insertion rows by incremental inference where it pays (exact), else full forward passes.

Row ``k`` of a curve differs from the curve's start image (deletion: the input; insertion: the baseline) only in
its first ``counts[k]`` ranked pixels, so only inside their bounding box. A concentrated map changes a small box
in its early steps: those rows are computed by incremental inference (:mod:`cnnlens.models._incremental`) from
one clean run of the start image, checked against the model (see
:func:`cnnlens.attribution.perturbation._incremental.changed_scores`), in batches of one image's rows of similar
box area (each batch computed at its largest box). Full forward passes run the rest:

* rows whose box covers more than :data:`MAX_AREA` of the image;
* an image's rows after the first batch that cost more than :data:`MAX_FRACTION` of a full pass's multiply-adds
  (measured on EfficientNet-Lite0 on one thread: above it an incremental row takes about a full pass's time);
* every row of an image with fewer than :data:`MIN_ROWS` small rows per pass of overhead (the clean run and the
  check row would cost more than the rows save): one pass for deletion (its start image is the input, whose
  logits are known, so its first row is free), two for insertion (its start image needs its own pass anyway);
* every row of a model that does not trace, and with ``incremental="off"``.

Passes count honestly: one per clean run and per check row, and each incremental row as the fraction of a full
pass's multiply-adds (of convolutions and linear layers) it cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..attribution.perturbation import changed_scores, engine, full
from ..engine import Rows
from ._base import MetricRun

T = torch.Tensor
MAX_AREA = 0.25
MAX_FRACTION = 0.75
MIN_ROWS = 4


def mask_boxes(ranks: T, counts: T) -> T:
    """Bounding box ``(top, bottom, left, right)`` of the pixels ranked below ``counts[k]`` (``ranks``: (B, H, W),
    0 = first changed), for every image and step: (B * len(counts), 4), image-major; zeros where none changes."""
    b, _, w = ranks.shape
    order = torch.argsort(ranks.flatten(1), dim=1)  # the pixel at each rank
    last = (counts - 1).clamp(min=0)
    ys, xs = order // w, order % w
    box = torch.stack(
        [ys.cummin(1).values[:, last], ys.cummax(1).values[:, last] + 1,
         xs.cummin(1).values[:, last], xs.cummax(1).values[:, last] + 1], -1,
    )  # fmt: skip
    box[:, counts == 0] = 0
    return box.reshape(-1, 4)


def curve_scores(
    job: MetricRun,
    make: Callable[[T], T],
    owner: T,
    boxes: T,
    changed: Callable[[T], T],
    start: T,
    end: T,
    output: str,
    setting: str,
    desc: str,
) -> tuple[T, dict[str, Any]]:
    """Target score (``output``) of every curve row and what ``info`` says about how they ran.

    ``make(rows)``: the rows (indices) as images; ``owner``: each row's image; ``boxes``: each row's
    :func:`mask_boxes`; ``changed(rows)``: (n, H, W) bool, the pixels a row takes from ``end`` (B, C, H, W)
    instead of ``start``; ``setting``: the ``incremental`` option."""
    ctx = job.ctx
    out = start.new_full((len(owner),), float("nan"))
    area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).to(start.dtype) / start[0, 0].numel()
    small = (area > 0) & (area <= MAX_AREA)
    per_image = torch.zeros(job.n, dtype=torch.long, device=owner.device).index_add_(0, owner, small.long())
    most = int(per_image.max()) if len(owner) else 0
    minimum = MIN_ROWS * (1 if start is job.inputs else 2)  # per pass of overhead: see the module docstring
    eng = None
    if setting != "off" and most < minimum:
        full(ctx, f"at most {most} rows per image change pixels inside a box of at most {MAX_AREA:.0%} of the "
                  f"image: incremental inference pays off from {minimum}")  # fmt: skip
    else:
        eng = engine(ctx, setting, most, minimum=minimum)
    if eng is not None:
        images = per_image >= minimum
        rows = (small & images[owner]).nonzero()[:, 0]
        if start is job.inputs:  # deletion: the inputs' logits are known
            reference = ctx.logits
        else:
            imgs = images.nonzero()[:, 0]
            reference = torch.zeros_like(ctx.logits)
            with torch.no_grad():
                parts = ctx.run(lambda sl: ctx.evaluate(start[imgs[sl]], imgs[sl])[0], len(imgs))
            reference[imgs] = torch.cat(parts)
        first = (area == 0) & images[owner]  # the start images themselves
        out[first] = job.output_scores(reference[owner[first]], owner[first], output)

        def inside(r: T, y: T, x: T, h: int, w: int) -> T:
            iy = y[:, None] + torch.arange(h, device=y.device)
            ix = x[:, None] + torch.arange(w, device=x.device)
            n = torch.arange(len(r), device=r.device)
            return changed(rows[r])[n[:, None, None], iy[:, :, None], ix[:, None, :]][:, None]

        def score(logits: T, own: T) -> T:
            return job.output_scores(logits, own, output)

        s = changed_scores(
            ctx, eng, end, owner[rows], boxes[rows], inside, desc,
            clean=start, reference=reference, score=score, max_fraction=MAX_FRACTION,
        )  # fmt: skip
        if s is None:
            out[first] = float("nan")
        else:
            out[rows] = s
    done = int((~out.isnan() & small).sum())  # rows computed incrementally (not the start images)
    rest = out.isnan().nonzero()[:, 0]
    if len(rest):
        part = Rows(len(rest), lambda sl: make(rest[sl]))
        out[rest] = job.scores(part, owner[rest], output, desc=desc)
    return out, _info(ctx.info, done, len(owner) - done, eng is not None)


def _info(info: dict, incremental: int, full_rows: int, ran: bool) -> dict[str, Any]:
    """``inference`` (``"incremental"`` when any row ran so, else ``"full"``), the rows of each path (a start
    image counts as full: its own pass), the mean multiply-add fraction of the incremental rows and why the
    others ran whole."""
    out: dict[str, Any] = {"inference": "incremental" if incremental else "full", "incremental_rows": incremental,
                           "full_rows": full_rows}  # fmt: skip
    if incremental:
        out["multiply_adds"] = info["multiply_adds"]
    if full_rows:
        reason = info.get("inference_reason") if not ran or info.get("inference") == "full" else None
        out["inference_reason"] = reason or (
            f"rows whose changed pixels' bounding box covers more than {MAX_AREA:.0%} of the image, rows after a "
            f"batch that cost more than {MAX_FRACTION:.0%} of a full pass's multiply-adds, and images with fewer "
            f"than {MIN_ROWS} smaller rows per pass of overhead run as full passes (as does each curve's start image)"
        )
    return out
