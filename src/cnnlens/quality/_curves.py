"""Quality metrics: deletion, insertion and ROAD curves.

Pixels are ranked by the channel-summed attribution map, ties broken by raster position (stable sort).
``sign="positive"`` (default) ranks by signed value, largest first, so evidence for the class goes first and
evidence against it last; ``sign="absolute"`` ranks by magnitude. With ``N = H * W`` pixels and ``steps``
steps, step ``k`` changes the first ``floor(k * N / steps)`` pixels of the ranking (when ``steps`` does not
divide ``N`` the steps differ by one pixel) and ``curve_x`` is the exact fraction ``floor(k * N / steps) / N``.
Every perturbed image is built only when its batch is scored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from ..attribution import drawing_from, single_baseline
from ..attribution.perturbation import incremental_option
from ..core.errors import CnnlensError
from ..core.options import Option, choice, integer, number, value
from ..engine import Rows
from ._base import Metric, MetricRun
from ._curve_rows import curve_scores, mask_boxes
from ._registry import register_metric

T = torch.Tensor
_SIGNS = ("positive", "absolute")
_OUTPUTS = ("probability", "logit")


def pixel_ranks(attributions: T, sign: str = "positive", descending: bool = True) -> T:
    """``(B, H, W)`` rank of every pixel (0 = first to be changed) of the channel-summed map, stable on ties."""
    if not torch.isfinite(attributions).all():
        raise CnnlensError("the attributions contain NaN or infinite values; they cannot rank pixels")
    s = attributions.sum(1).flatten(1)
    key = s.abs() if sign == "absolute" else s
    order = torch.argsort(-key if descending else key, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks.view(attributions.shape[0], *attributions.shape[-2:])


def step_counts(n_pixels: int, steps: int) -> T:
    """Pixels changed at each step ``k = 0..steps``: ``floor(k * n_pixels / steps)``."""
    return torch.arange(steps + 1) * n_pixels // steps


def _auc(curve: T, x: T) -> T:
    return torch.trapezoid(curve.double(), x.double().to(curve.device), dim=1)


SIGN = choice("positive", _SIGNS, "rank pixels by signed value (evidence for the class first) or by size")
OUTPUT = choice("probability", _OUTPUTS, "score the target's softmax probability or its logit")
INCREMENTAL = incremental_option()


def _steps(default: int, minimum: int = 1) -> Option:
    return integer(default, "points of the curve after the start (pixels change in equal shares)", minimum=minimum)


def _baseline(default: str | None) -> Option:
    return value(
        default,
        "what removed pixels become (None: black for a Classifier, 0 for a bare module)",
        "None or a baseline the attribution methods take (a name such as 'blur', a number, a tensor)",
    )


def _pixels(job: MetricRun, steps: int) -> int:
    n = job.inputs.shape[-2] * job.inputs.shape[-1]
    if steps > n:
        raise CnnlensError(f"steps={steps} is more than the {n} pixels of the inputs; use steps <= {n}")
    return n


class _PixelCurve(Metric):
    """Deletion and insertion: change the top-ranked pixels step by step and score every step (``output``: the
    target's softmax probability or its logit); the value is the trapezoid area under the curve over
    ``curve_x`` (0..1).

    ``incremental="exact"`` (default): rows whose changed pixels lie inside a small box (the early steps of a
    concentrated map) are computed by incremental inference from the curve's start image (deletion: the input,
    insertion: the baseline), equal to full forward passes up to float rounding; the others run whole
    (``"off"``: all rows run whole). ``info``: ``inference``, ``incremental_rows``, ``full_rows``,
    ``multiply_adds`` (mean fraction of a full pass's multiply-adds of an incremental row, which is what it
    counts in ``passes``) and ``inference_reason`` (why rows ran whole); see ``cnnlens.quality._curve_rows``."""

    kind = "curve"
    insert = False

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        o = self.options
        x, steps = job.inputs, o["steps"]
        n_pix = _pixels(job, steps)
        spec = o["baseline"]
        if spec is None:
            spec = "black" if job.preprocessing is not None else "zero"
        with drawing_from(job.generator):  # baseline="noise" draws from the metric's seed
            base = single_baseline(spec, x, job.preprocessing)
        ranks = pixel_ranks(job.attributions, o["sign"])
        counts = step_counts(n_pix, steps).to(x.device)
        k1 = steps + 1
        start, end = (base, x) if self.insert else (x, base)

        def changed(r: T) -> T:
            return ranks[r // k1] < counts[r % k1][:, None, None]

        def make(r: T) -> T:
            img = r // k1
            return torch.where(changed(r)[:, None], end[img], start[img])

        owner = job.owners(k1)
        boxes = mask_boxes(ranks, counts)
        curve, info = curve_scores(
            job, make, owner, boxes, changed, start, end, o["output"], o["incremental"], self.name
        )
        curve_x = counts.double() / n_pix
        return _auc(curve.view(job.n, k1), curve_x), curve.view(job.n, k1), curve_x, info


@register_metric
class Deletion(_PixelCurve):
    """Petsiuk et al. 2018 (RISE): replace the most relevant pixels by a baseline; a fast drop is faithful.

    ``baseline=None``: black pixels for a Classifier (it knows its normalization), 0 for a bare module; or any
    baseline the attribution methods take (a name, a number, a tensor)."""

    name = "deletion"
    summary = "area under the target score as the top-ranked pixels are replaced by a baseline (Petsiuk et al.)"
    higher_is_better = False
    params = {
        "steps": _steps(20),
        "baseline": _baseline(None),
        "sign": SIGN,
        "output": OUTPUT,
        "incremental": INCREMENTAL,
    }


@register_metric
class Insertion(_PixelCurve):
    """Petsiuk et al. 2018 (RISE): start from a blurred image (Gaussian, sigma 10 pixels) and restore the most
    relevant pixels first; a fast rise is faithful."""

    name = "insertion"
    summary = "area under the target score as the top-ranked pixels are restored into a blurred image (Petsiuk)"
    higher_is_better = True
    params = {
        "steps": _steps(20),
        "baseline": _baseline("blur"),
        "sign": SIGN,
        "output": OUTPUT,
        "incremental": INCREMENTAL,
    }
    insert = True


# ---- ROAD --------------------------------------------------------------------------------------------------
_NEIGHBOURS = (
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _dissection_rank(h: int, w: int, leaf: int = 64) -> np.ndarray:
    """Position of every pixel of an ``h x w`` grid (raster index) in a nested-dissection order: both halves
    of a rectangle first, then the line of pixels that separates them (8-neighbours reach one pixel only)."""
    parts: list[np.ndarray] = []
    todo: list[tuple[int, int, int, int] | np.ndarray] = [(0, h, 0, w)]
    while todo:  # depth first, a separator after both of its halves: built in reverse, then flipped
        item = todo.pop()
        if isinstance(item, np.ndarray):
            parts.append(item)
            continue
        r0, r1, c0, c1 = item
        if (r1 - r0) * (c1 - c0) <= leaf or max(r1 - r0, c1 - c0) < 3:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            parts.append((rr * w + cc).ravel()[::-1])
        elif r1 - r0 >= c1 - c0:
            m = (r0 + r1) // 2
            parts.append((m * w + np.arange(c0, c1))[::-1])
            todo += [(r0, m, c0, c1), (m + 1, r1, c0, c1)]
        else:
            m = (c0 + c1) // 2
            parts.append((np.arange(r0, r1) * w + m)[::-1])
            todo += [(r0, r1, c0, m), (r0, r1, m + 1, c1)]
    order = np.concatenate(parts)[::-1]
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    return rank


@functools.lru_cache(maxsize=8)
def _neighbour_table(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(raster index of every pixel's 8 neighbours, ``(h * w, 8)``, 0 outside the image; their weights, 0
    outside)."""
    rows, cols = np.divmod(np.arange(h * w), w)
    index = np.zeros((h * w, len(_NEIGHBOURS)), dtype=np.int64)
    weight = np.zeros((h * w, len(_NEIGHBOURS)))
    for k, ((dy, dx), wk) in enumerate(_NEIGHBOURS):
        ry, cx = rows + dy, cols + dx
        inside = (ry >= 0) & (ry < h) & (cx >= 0) & (cx < w)
        index[inside, k] = ry[inside] * w + cx[inside]
        weight[inside, k] = wk
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def linear_imputation(image: T, missing: T) -> T:
    """``image`` ``(C, H, W)`` with every ``missing`` pixel (``(H, W)`` bool) replaced by the weighted mean of
    its in-image 8-neighbours (direct 1/6, diagonal 1/12), all missing pixels solved jointly as one sparse
    linear system (Rong et al. 2022), in single precision for a float32 (or half) image, else in double. Some pixel
    must be known."""
    c, h, w = image.shape
    miss = missing.detach().cpu().numpy().astype(bool).ravel()
    out = image.detach().clone()
    # Unknowns in nested-dissection order (that of the whole pixel grid, restricted to them): a separator line
    # splits the pixels, recursively, so the factors stay sparse. The system is symmetric and diagonally
    # dominant: SuperLU's symmetric mode (no row pivoting) in this order factors it ~1.8x faster than with its
    # own minimum-degree ordering, to the same numbers up to rounding.
    rank = _dissection_rank(h, w)
    unknown = np.flatnonzero(miss)
    if unknown.size == 0:
        return out
    if unknown.size == miss.size:
        raise CnnlensError("linear imputation needs at least one known pixel; every pixel was removed")
    unknown = unknown[np.argsort(rank[unknown], kind="stable")]
    n = unknown.size
    position = np.full(miss.size, -1)
    position[unknown] = np.arange(n)
    table, weights = _neighbour_table(h, w)
    q, wq = table[unknown], weights[unknown]  # (n, 8): neighbours of each unknown, 0-weight outside
    couples = miss[q] & (wq > 0)  # neighbours that are unknown too
    work = np.float64 if image.dtype == torch.float64 else np.float32  # the solve rounds like the image
    img = image.detach().cpu().to(torch.float64 if work is np.float64 else torch.float32).numpy().reshape(c, -1)
    b = -np.einsum("cnk,nk->nc", img[:, q], np.where(couples, 0.0, wq)).astype(work)  # known neighbours: right side
    i = np.concatenate([np.repeat(np.arange(n), couples.sum(1)), np.arange(n)])
    j = np.concatenate([position[q[couples]], np.arange(n)])
    values = np.concatenate([wq[couples], -wq.sum(1)]).astype(work)
    a = coo_matrix((values, (i, j)), shape=(n, n)).tocsc()
    lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    solved = np.asarray(lu.solve(b)).reshape(n, c)
    flat = out.view(c, -1)
    flat[:, torch.from_numpy(unknown).to(out.device)] = torch.from_numpy(solved.T.copy()).to(out)
    return out


def noisy_linear_imputation(image: T, missing: T, noise: float, generator: torch.Generator) -> T:
    """``linear_imputation`` plus Gaussian noise of std ``noise`` on the imputed values (ROAD's imputer)."""
    out = linear_imputation(image, missing)
    if noise > 0:
        eps = torch.randn(out.shape, generator=generator, device="cpu").to(out) * noise
        out = torch.where(missing.to(out.device)[None], out + eps, out)
    return out


class _Ahead(Rows):
    """Rows made one by one on a pool of threads (``torch.get_num_threads()``), the next chunk's while the
    current one is scored: the sparse solves of the imputation run outside Python's lock, beside the model."""

    def __init__(self, n: int, make: Callable[[int], T]) -> None:
        super().__init__(n, self._chunk)
        self._row = make
        self._pool = ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix="cnnlens-road")
        self._made: dict[int, Future] = {}

    def _submit(self, rows: range) -> None:
        for r in rows:
            if r not in self._made:
                self._made[r] = self._pool.submit(self._row, r)

    def _chunk(self, sl: slice) -> T:
        self._submit(range(sl.start, sl.stop))
        out = torch.stack([self._made.pop(r).result() for r in range(sl.start, sl.stop)])
        self._submit(range(sl.stop, min(self.shape[0], 2 * sl.stop - sl.start)))
        return out

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@register_metric
class Road(Metric):
    """Rong et al. 2022: remove pixels (MoRF and LeRF orders) and fill them by noisy linear imputation."""

    name = "road"
    summary = "ROAD: AUC(LeRF) - AUC(MoRF) of the target score with removed pixels imputed from their neighbours"
    higher_is_better = True
    params = {
        "steps": _steps(10, minimum=2),
        "noise": number(0.01, "std of the noise added to imputed pixels, in input units"),
        "sign": SIGN,
        "output": OUTPUT,
    }
    kind = "curve"

    def compute(self, job: MetricRun) -> tuple[T, T | None, T | None, dict[str, Any]]:
        """Fractions ``floor(k * N / steps) / N`` for ``k = 0..steps-1`` (all pixels removed has no
        neighbours to impute from). Removed pixels are imputed in the model's input space with noise of std
        ``noise`` (0.01, the authors' code). ``curve`` and ``info["morf"]`` = most-relevant-first,
        ``info["lerf"]`` = least-relevant-first; value = ``AUC(LeRF) - AUC(MoRF)`` (trapezoid over
        ``curve_x``): a faithful map loses the score fast when its top pixels go and slowly when its bottom
        pixels go, so higher is better."""
        o = self.options
        x, steps = job.inputs, o["steps"]
        n_pix = _pixels(job, steps)
        counts = step_counts(n_pix, steps)[:steps].to(x.device)
        ranks = torch.stack([pixel_ranks(job.attributions, o["sign"], descending=d) for d in (True, False)], 1)
        per_image = 2 * steps
        seed = int(torch.randint(2**62, (1,), generator=job.generator))  # one noise stream per row

        def make(r: int) -> T:
            img, rest = divmod(r, per_image)
            order, k = divmod(rest, steps)
            missing = ranks[img, order] < counts[k]
            g = torch.Generator().manual_seed(seed + r)
            return noisy_linear_imputation(x[img], missing, float(o["noise"]), g)

        owner = job.owners(per_image)
        with _Ahead(job.n * per_image, make) as rows:
            s = job.scores(rows, owner, o["output"], desc="road").view(job.n, 2, steps)
        morf, lerf = s[:, 0], s[:, 1]
        curve_x = counts.double() / n_pix
        value = _auc(lerf, curve_x) - _auc(morf, curve_x)
        return value, morf, curve_x, {"morf": morf.double(), "lerf": lerf.double()}
