"""Quality metrics: pointing game."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.errors import CnnlensError
from ..core.options import number, value
from ._base import Metric, MetricRun
from ._registry import register_metric

T = torch.Tensor


def _boxes_mask(boxes: object, n: int, h: int, w: int) -> T:
    """``(B, H, W)`` bool: the union of each image's boxes ``(x0, y0, x1, y1)``, inclusive pixel coordinates."""
    if hasattr(boxes, "tolist"):  # a tensor or array (B, 4)
        boxes = boxes.tolist()
    if not isinstance(boxes, Sequence) or len(boxes) != n:
        raise CnnlensError(
            f"boxes must give one entry per image ({n}): a box (x0, y0, x1, y1) or a list of boxes; got "
            f"{len(boxes) if isinstance(boxes, Sequence) else type(boxes).__name__}"
        )
    out = torch.zeros(n, h, w, dtype=torch.bool)
    for i, entry in enumerate(boxes):
        entry = entry.tolist() if hasattr(entry, "tolist") else entry
        if not isinstance(entry, (list, tuple)) or not entry:
            raise CnnlensError(f"image {i}: give a box (x0, y0, x1, y1) or a non-empty list of boxes; got {entry!r}")
        many = entry if all(isinstance(b, (list, tuple)) for b in entry) else [entry]
        for box in many:
            try:
                x0, y0, x1, y1 = (float(v) for v in box)
            except (TypeError, ValueError):
                raise CnnlensError(f"image {i}: a box is (x0, y0, x1, y1) in pixels; got {box!r}") from None
            if x1 < x0 or y1 < y0:
                raise CnnlensError(f"image {i}: box {box!r} has x1 < x0 or y1 < y0")
            ys = torch.arange(h, dtype=torch.float64)[:, None]
            xs = torch.arange(w, dtype=torch.float64)[None]
            out[i] |= (ys >= y0) & (ys <= y1) & (xs >= x0) & (xs <= x1)
    return out


@register_metric
class PointingGame(Metric):
    """Zhang et al. 2018 (excitation backprop): does the map's maximum fall on the object?"""

    name = "pointing_game"
    summary = "1 if the map's maximum lies on the object (box or mask, with a pixel tolerance), else 0 (Zhang et al.)"
    higher_is_better = True
    params = {
        "boxes": value(None, "per image, the object's boxes (x0, y0, x1, y1), inclusive pixels", "a list per image"),
        "masks": value(None, "per image, a (H, W) bool mask of the object", "a (B, H, W) bool tensor or a list"),
        "tolerance": number(15, "how far (pixels, Euclidean) the maximum may lie from the object"),
    }

    def check_options(self) -> None:
        o = self.options
        if o["boxes"] is not None and o["masks"] is not None:
            raise CnnlensError("pointing_game takes boxes= or masks=, not both")

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Hit (1) when the maximum of the channel-summed map is within ``tolerance`` pixels (Euclidean) of a
        pixel of the object (boxes: inclusive pixel coordinates of the inputs); ties go to the first maximum in
        raster order (TorchRay's convention). ``info["points"]``: the ``(row, col)`` of each maximum."""
        o = self.options
        if o["boxes"] is None and o["masks"] is None:
            raise CnnlensError(
                "pointing_game needs the objects' location: pass boxes= (one (x0, y0, x1, y1) or a list of them "
                "per image, in input pixels) or masks= (bool (B, H, W), True on the object)"
            )
        n, h, w = job.n, job.inputs.shape[-2], job.inputs.shape[-1]
        if o["masks"] is not None:
            try:
                m = torch.as_tensor(o["masks"])
            except (TypeError, ValueError, RuntimeError):
                raise CnnlensError(
                    f"masks must be a bool tensor or array (B, H, W), True on the object; got {type(o['masks']).__name__}"
                ) from None
            if m.dim() == 4 and m.shape[1] == 1:
                m = m[:, 0]
            if m.shape != (n, h, w):
                raise CnnlensError(f"masks must be (B, H, W) = ({n}, {h}, {w}) like the inputs; got {tuple(m.shape)}")
            if m.dtype != torch.bool:
                raise CnnlensError(f"masks must be a bool tensor (True on the object); got {m.dtype}")
            mask = m.cpu()
        else:
            mask = _boxes_mask(o["boxes"], n, h, w)
        if not mask.flatten(1).any(1).all():
            raise CnnlensError("every image needs a non-empty object mask or box for the pointing game")
        heat = job.attributions.sum(1).flatten(1).cpu()
        if not torch.isfinite(heat).all():
            raise CnnlensError("the attributions contain NaN or infinite values; there is no maximum")
        flat = heat.argmax(1)  # first maximum in raster order
        pr, pc = flat // w, flat % w
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        hits = torch.zeros(n, dtype=torch.float64)
        for i in range(n):
            d2 = (ys - pr[i]) ** 2 + (xs - pc[i]) ** 2
            hits[i] = float(d2[mask[i]].min() <= float(o["tolerance"]) ** 2)
        return hits, None, None, {"points": torch.stack([pr, pc], 1)}
