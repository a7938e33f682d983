"""One shard of a run, computed anywhere (this process or a Ray actor): read and preprocess its images, predict,
explain each image with every method, score the explanations, and return rows and maps ready to be written.

An image that cannot be read, preprocessed or explained becomes a failed row with its reason; the others go on.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import CnnlensError, CnnlensWarning
from ..core.model_guard import frozen
from ..core.progress import checkpoint
from ..models import class_probabilities
from ._settings import RunPlan, shard_seed

if TYPE_CHECKING:
    from ..models import Classifier

T = torch.Tensor
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class ShardResult:
    """The rows and maps of one shard (positions ``start..start + len(images)``)."""

    shard: int
    start: int
    images: list[dict[str, Any]]
    """One row per image of the shard, failed ones included (``ok`` False, ``error`` the reason)."""
    explanations: list[dict[str, Any]]
    """One row per (image, method, class explained) of the images that did not fail."""
    maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    """(method label, "predicted" or "label") -> float16 ``(shard images, C, h, w)``, NaN where there is none."""
    resolution: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    passes: int = 0
    seconds: float = 0.0


def _inputs(classifier: Classifier, items: list[Any]) -> T:
    """Images (or preprocessed ``(C, H, W)`` tensors) as one ``(n, C, H, W)`` model input."""
    if all(isinstance(item, torch.Tensor) for item in items):
        if any(item.dim() != 3 or not item.is_floating_point() for item in items):
            raise CnnlensError("a tensor sample must be a (C, H, W) float tensor (preprocessed as the model expects)")
        return torch.stack(items).to(classifier.device)
    return classifier.preprocess(items)


def _read(job: RunPlan, start: int, stop: int, rows: dict[int, dict[str, Any]]) -> tuple[list[int], T | None]:
    """Decode and preprocess the shard's images (all at once; one by one only to find the ones that fail);
    failures become failed rows."""
    positions, items = [], []
    for pos in range(start, stop):
        try:
            item, label = job.dataset[pos]
            rows[pos]["label"] = None if label is None else int(label)  # None: an unlabelled image
        except Exception as e:  # noqa: BLE001 - any reason a sample cannot be used is recorded, and the run goes on
            _fail(rows[pos], str(e) if isinstance(e, CnnlensError) else f"cannot be read: {_reason(e)}")
            continue
        positions.append(pos)
        items.append(item)
    if not items:
        return [], None
    try:
        return positions, _inputs(job.classifier, items)
    except Exception:  # noqa: BLE001 - some image cannot be preprocessed: find which, below
        pass
    kept, inputs = [], []
    for pos, item in zip(positions, items, strict=True):
        try:
            inputs.append(_inputs(job.classifier, [item]))
        except Exception as e:  # noqa: BLE001 - as above
            _fail(rows[pos], f"cannot be preprocessed: {_reason(e)}")
            continue
        kept.append(pos)
    if len({tuple(x.shape) for x in inputs}) > 1:
        raise CnnlensError("the data set's samples have different shapes after preprocessing; give the model a size")
    return kept, torch.cat(inputs) if inputs else None


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if isinstance(err, CnnlensError) else f"{type(err).__name__}: {text}"


def _fail(row: dict[str, Any], reason: str) -> None:
    row.update(ok=False, error=reason, predicted=None, top_classes=None, top_probabilities=None, p_label=None)


def _predict(job: RunPlan, x: T) -> T:
    """Logits of ``x`` in chunks of ``batch_size`` (the model frozen, no gradients)."""
    module = job.classifier.module
    size = job.batch_size or x.shape[0]
    parts = []
    with frozen(module), torch.no_grad():
        for i in range(0, x.shape[0], size):
            parts.append(job.classifier.check_logits(module(x[i : i + size])))
            checkpoint(parts[-1].shape[0])
    return torch.cat(parts)


def _stored(e: Any, downsample: int | None, size: tuple[int, int]) -> tuple[T, dict[str, Any]]:
    """The map as kept: a single-layer CAM at its layer's resolution (the returned map is exactly its bilinear
    upsampling), a layer attribution as it is, others at the input's ``size``, averaged over ``downsample`` x
    ``downsample`` blocks if asked."""
    a = e.attributions.detach().float()
    layer_maps = e.info.get("layer_maps")
    if layer_maps is not None and len(layer_maps) == 1 and layer_maps[0].shape[-2:] != a.shape[-2:]:
        small = layer_maps[0].detach().float()
        up = F.interpolate(small, size=tuple(a.shape[-2:]), mode="bilinear", align_corners=False)
        if up.shape == a.shape and torch.equal(up, a):
            return small, {"resolution": "layer", "layer": e.info["layers"][0], "input_size": list(size)}
    if tuple(a.shape[-2:]) != tuple(size):  # attributions to a layer's units (methods whose output is "layer")
        return a, {"resolution": "layer_attribution", "layer": e.options.get("layer"), "input_size": list(size)}
    if downsample is not None and downsample > 1:
        h, w = size
        a = F.adaptive_avg_pool2d(a, (max(1, h // downsample), max(1, w // downsample)))
        return a, {"resolution": "downsampled", "factor": downsample, "input_size": list(size)}
    return a, {"resolution": "input", "input_size": list(size)}


def _compact(maps: T) -> tuple[np.ndarray, np.ndarray, bool]:
    """(float16 maps, each divided by its largest absolute value so that float16 keeps ~3 significant digits
    whatever the map's magnitude; the scales; whether some map held non-finite values)."""
    scale = maps.flatten(1).abs().amax(1)
    finite = torch.isfinite(scale)
    scale = torch.where(finite & (scale > 0), scale, torch.ones_like(scale))
    scaled = maps / scale.view(-1, *([1] * (maps.dim() - 1)))
    return scaled.half().cpu().numpy(), scale.double().cpu().numpy(), bool((~finite).any())


def _caught(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """``fn()`` and the cnnlens warnings it gave (other warnings go on as they came)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CnnlensWarning)
        out = fn()
    for w in caught:
        if not issubclass(w.category, CnnlensWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out, sorted({str(w.message) for w in caught if issubclass(w.category, CnnlensWarning)})


class _Shard:
    """The work of one shard, step by step (see `compute_shard`)."""

    def __init__(self, job: RunPlan, shard: int) -> None:
        self.job = job
        self.shard = shard
        self.seed = shard_seed(job.seed, shard)
        self.start, self.stop = job.bounds(shard)
        self.rows: dict[int, dict[str, Any]] = {
            p: {"position": p, "id": job.ids[p], "shard": shard, "label": None, "ok": True, "error": None}
            for p in range(self.start, self.stop)
        }
        self.passes = 0
        self.size: tuple[int, int] = (0, 0)  # the model input's (H, W), once the images are read

    def explain(self, label: str, x: T, targets: T | None) -> tuple[Any, dict[int, str], list[str]]:
        """(Explanation of the rows that can be explained, {row: reason} for those that cannot, warnings);
        ``targets`` ``None``: the predicted classes."""
        from ..attribution import explain

        name, opts = self.job.methods[label]

        def run(rows: list[int] | slice) -> Any:
            tgt = None if targets is None else targets[rows]
            return explain(
                self.job.classifier, x[rows], name, target=tgt, batch_size=self.job.batch_size, seed=self.seed, **opts
            )

        try:
            e, said = _caught(lambda: run(slice(None)))
            return e, {}, said
        except CnnlensError as err:
            if x.shape[0] == 1:
                return None, {0: _reason(err)}, []
            first = err
        failed = {}
        for i in range(x.shape[0]):  # which images fail, one by one; then the rest together, as usual
            try:
                run(slice(i, i + 1))
            except CnnlensError as err:
                failed[i] = _reason(err)
        if len(failed) == x.shape[0]:
            raise CnnlensError(f"method {label} fails on every image of shard {self.shard}: {_reason(first)}")
        keep = [i for i in range(x.shape[0]) if i not in failed]
        e, said = _caught(lambda: run(keep))
        return e, failed, said

    def score(self, label: str, e: Any, x: T, targets: T) -> tuple[dict[str, np.ndarray], list[str]]:
        """Every metric's value per row (NaN with a note ``"metric: reason"`` where it does not apply)."""
        from ..quality import get_metric, score

        name, opts = self.job.methods[label]
        values, notes = {}, []
        for metric, metric_opts in self.job.metrics.items():
            rerun = get_metric(metric).rerun
            try:
                s, said = _caught(
                    partial(
                        score, metric, self.job.classifier, x, name if rerun else e, target=targets,
                        batch_size=self.job.batch_size, seed=self.seed, method_options=opts if rerun else None,
                        progress=False, **metric_opts,
                    )
                )  # fmt: skip
            except CnnlensError as err:
                values[metric] = np.full(x.shape[0], np.nan)
                notes.append(f"{metric}: {_reason(err)}")
                continue
            self.passes += s.passes
            values[metric] = s.values.numpy()
            notes += [f"{metric}: {w}" for w in said]
        return values, notes


def compute_shard(job: RunPlan, shard: int) -> ShardResult:
    """Rows and maps of shard ``shard`` of ``job`` (the global torch RNG is left as it was)."""
    start_time = time.perf_counter()
    work = _Shard(job, shard)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(work.seed)
        result = _compute(work)
    result.seconds = time.perf_counter() - start_time
    return result


def _compute(work: _Shard) -> ShardResult:
    job, rows = work.job, work.rows
    positions, x = _read(job, work.start, work.stop, rows)
    result = ShardResult(work.shard, work.start, [], [])
    failed: dict[int, str] = {}
    explained: list[tuple[str, str, list[int], Any, dict[str, np.ndarray], list[str], list[str]]] = []
    first = None
    if x is not None:
        work.size = (int(x.shape[-2]), int(x.shape[-1]))
        positions, x, first = _predictions(work, positions, x, failed)
    if x is not None:
        for label in job.methods:
            for kind, (idx, targets) in _targets(job, rows, positions).items():
                if not idx:
                    continue
                bad: dict[int, str] = {}
                if first is not None and first[0] == (label, kind):
                    e, said = first[1], first[2]  # explained already, with the predicted class
                else:
                    e, bad, said = work.explain(label, x[idx], targets)
                for i, reason in bad.items():
                    failed.setdefault(positions[idx[i]], f"{label}: {reason}")
                if e is None:
                    continue
                keep = [idx[i] for i in range(len(idx)) if i not in bad]
                values, notes = work.score(label, e, x[keep], targets[[i for i in range(len(idx)) if i not in bad]])
                work.passes += e.passes
                explained.append((label, kind, keep, e, values, said, notes))
    for pos, reason in failed.items():
        _fail(rows[pos], reason)
    _collect(work, result, positions, explained)
    result.images = [rows[p] for p in range(work.start, work.stop)]
    result.passes = work.passes
    return result


def _predictions(
    work: _Shard, positions: list[int], x: T, failed: dict[int, str]
) -> tuple[list[int], T | None, tuple | None]:
    """Fill the prediction columns from the model's logits: those of the first method's explanation of the predicted
    class (no extra pass; returned as ``((label, "predicted"), explanation, warnings)`` to be kept), or of a
    forward pass when only the labels are explained. Images that cannot be explained or predicted fail."""
    job, rows = work.job, work.rows
    first = None
    if job.explain == "label" or not job.methods:  # no methods: a store of predictions (explained on demand)
        logits = _predict(job, x)
        work.passes += x.shape[0]
    else:
        label = next(iter(job.methods))
        e, bad, said = work.explain(label, x, None)
        for i, reason in bad.items():
            failed[positions[i]] = f"{label}: {reason}"
        if e is None:
            return [], None, None
        keep = [i for i in range(len(positions)) if i not in bad]
        positions, x, logits = [positions[i] for i in keep], x[keep], e.logits
        first = ((label, "predicted"), e, said)
    finite = torch.isfinite(logits).all(1)
    probs = class_probabilities(logits.double()).cpu().numpy()  # one logit: the sigmoid pair
    k = min(job.top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    kept = []
    for i, pos in enumerate(positions):
        row = rows[pos]
        if not bool(finite[i]):
            failed[pos] = "the model returned NaN or infinite logits for this image"
            continue
        truth = row["label"]
        row.update(
            predicted=int(order[i, 0]),
            top_classes=[int(c) for c in order[i]],
            top_probabilities=[float(probs[i, c]) for c in order[i]],
            p_label=float(probs[i, truth]) if truth is not None and 0 <= truth < probs.shape[1] else None,
        )
        kept.append(i)
    if len(kept) < len(positions):  # only after a forward pass: an explanation has finite logits or fails
        positions, x = [positions[i] for i in kept], x[kept]
    return positions, (x if positions else None), first


def _targets(job: RunPlan, rows: dict[int, dict[str, Any]], positions: list[int]) -> dict[str, tuple[list[int], T]]:
    """kind -> (rows of ``x``, the class each is explained for); unlabelled images have no label explanation."""
    predicted = [rows[p]["predicted"] for p in positions]
    labels = [rows[p]["label"] for p in positions]
    out: dict[str, tuple[list[int], T]] = {}
    if job.explain in ("predicted", "both"):
        out["predicted"] = (list(range(len(positions))), torch.tensor(predicted))
    if job.explain in ("label", "both"):
        idx = [i for i, label in enumerate(labels) if label is not None]
        if job.explain == "both":
            idx = [i for i in idx if labels[i] != predicted[i]]
        out["label"] = (idx, torch.tensor([labels[i] for i in idx], dtype=torch.long))
    return out


def _collect(work: _Shard, result: ShardResult, positions: list[int], explained: list) -> None:
    """Explanation rows and float16 maps of the images that did not fail."""
    rows, n = work.rows, work.stop - work.start
    for label, kind, keep, e, values, said, notes in explained:
        stored, meta = _stored(e, work.job.downsample, work.size)
        compact, scales, clipped = _compact(stored)
        if clipped:
            said = [*said, "some map values were not finite; they are stored as NaN"]
        block = result.maps.get((label, kind))
        if block is None:
            block = np.full((n, *compact.shape[1:]), np.nan, dtype=np.float16)
            result.maps[(label, kind)] = block
            result.resolution[(label, kind)] = meta
        count = len(keep)
        sums = e.attributions.detach().flatten(1).double().sum(1).cpu().numpy()
        delta = None if e.delta is None else e.delta.detach().double().cpu().numpy()
        for j, i in enumerate(keep):
            pos = positions[i]
            if not rows[pos]["ok"]:
                continue
            block[pos - work.start] = compact[j]
            target = e.target[j]
            result.explanations.append(
                {
                    "position": pos, "id": rows[pos]["id"], "method": label, "explains": kind,
                    "target": int(target), "seconds": e.seconds / count, "passes": e.passes / count,
                    "delta": None if delta is None else float(delta[j]), "attribution_sum": float(sums[j]),
                    "map_scale": float(scales[j]), "warnings": list(said), "notes": list(notes),
                    **{m: _number(v[j]) for m, v in values.items()},
                }
            )  # fmt: skip
    result.explanations.sort(key=lambda r: (r["position"], list(work.job.methods).index(r["method"]), r["explains"]))


def _number(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v
