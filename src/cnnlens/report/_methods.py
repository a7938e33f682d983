"""Running the chosen methods for a report, and what the report says about them as a group: which are the same
computation, how much their maps agree (a ranked short table and a clustered heat map), and what they cost."""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings
from typing import Any

import numpy as np
import torch

from ..core.errors import CnnlensError, CnnlensWarning
from ..core.progress import progress_bar
from . import _notes as notes
from ._claims import Z, merged_name, paired, same_computation
from ._records import Maps, MethodRun

AGREEMENT_FRACTION = 0.1  # share of the most important pixels compared between two maps


def warm_up(classifier: Any, x: torch.Tensor) -> float:
    """Seconds of one forward and backward pass on the first input: the one-off cost (code paths, memory) that
    the first method timed would otherwise pay for all. The model is left as it was."""
    from ..attribution import explain

    start = time.perf_counter()
    explain(classifier, x[:1], "saliency", progress=False)
    return time.perf_counter() - start


def run_methods(
    classifier: Any, x: torch.Tensor, targets: Any, methods: dict[str, dict[str, Any]], *, batch_size: int | None,
    seed: int, progress: bool, desc: str = "explaining",
) -> tuple[Maps, dict[str, MethodRun]]:  # fmt: skip
    """Run each method once on the whole batch; returns maps and, per method, its `MethodRun`: seconds, passes,
    options and the warnings it gave (or the error that stopped it: a method that cannot run on this model is
    listed, not hidden)."""
    from ..attribution import explain

    maps: Maps = {}
    info: dict[str, MethodRun] = {}
    for m, opts in progress_bar(methods.items(), desc=desc, unit="method"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CnnlensWarning)
                e = explain(classifier, x, m, target=targets, batch_size=batch_size, seed=seed, **opts)
        except CnnlensError as err:
            info[m] = MethodRun(options=opts, error=str(err))
            continue
        for w in caught:  # other warnings go on as they came; ours are listed in the cost table
            if not issubclass(w.category, CnnlensWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        maps[m] = e.attributions.detach().float().cpu().numpy()
        if e.info.get("class_evidence") is False:  # its sign is a convention (Eigen-CAM): drawn as one-sign weight
            maps[m] = one_sign(maps[m])
        rel = None
        if e.delta is not None:
            gap = e.attributions.flatten(1).sum(1) - e.delta
            rel = float((e.delta.abs() / gap.abs().clamp_min(1e-12)).mean())
        said = sorted({str(w.message) for w in caught if issubclass(w.category, CnnlensWarning)})
        info[m] = MethodRun(
            options=opts, seconds=round(e.seconds, 3), passes=round(float(e.passes), 2), relative_delta=rel,
            warnings=said,
        )  # fmt: skip
    return maps, info


def one_sign(maps: np.ndarray) -> np.ndarray:
    """Each map min-max rescaled to [0, 1]: drawn in the evidence-for half of the colour map only, never as
    evidence against (for maps whose sign is a convention, not a direction of evidence)."""
    flat = maps.reshape(maps.shape[0], -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((flat - lo[:, None]) / span[:, None]).reshape(maps.shape).astype(maps.dtype)


def merge_duplicates(maps: Maps, info: dict[str, MethodRun]) -> Maps:
    """``maps`` with each group of methods that are the same computation (identical maps on every image) kept
    once, under the joined name (``occlusion = feature ablation``); in ``info`` the others are marked ``same_as``
    the first, the first ``same_as_shown`` the joined name."""
    merged = dict(maps)
    for group in same_computation(maps):
        first = group[0]
        for m in group[1:]:
            merged.pop(m)
            info[m] = dataclasses.replace(info[m], same_as=first)
        merged[merged_name(group)] = merged.pop(first)
        info[first] = dataclasses.replace(info[first], same_as_shown=merged_name(group))
    return merged


def shown_key(info: dict[str, MethodRun], method: str) -> str:
    """The key under which ``method``'s map is shown after `merge_duplicates` (its own name, or the joined name of
    its group)."""
    run = info.get(method)
    first = (run.same_as if run is not None else None) or method
    shown = info[first].same_as_shown if first in info else None
    return shown or first


def families(names: list[str] | None = None) -> dict[str, str]:
    """Method (or merged name) -> its family, the registry's category (gradient, cam, perturbation). Guided
    Grad-CAM is left out: it is guided backprop masked by Grad-CAM, a relative of both families; merged names
    get the family of their first method."""
    from ..attribution import methods

    known = {m.name: m.category for m in methods() if m.name != "guided_grad_cam"}
    shown = {notes.method_name(m): c for m, c in known.items()}
    out = dict(known)
    for n in names or []:
        first = n.split(" = ")[0]
        if first in shown:
            out[n] = shown[first]
    return out


def agreement_per_image(
    maps: dict[str, np.ndarray], fraction: float = AGREEMENT_FRACTION
) -> dict[tuple[str, str], np.ndarray]:
    """Top-``fraction`` overlap (`topk_overlap`) of every pair of methods' maps, one value per image."""
    top = {m: [notes.top_pixels(a, fraction).indices for a in maps[m]] for m in maps}
    return {
        (a, b): np.array(
            [len(np.intersect1d(u, v, assume_unique=True)) / len(u) for u, v in zip(top[a], top[b], strict=True)]
        )
        for a, b in itertools.combinations(maps, 2)
    }


def agreement(maps: dict[str, np.ndarray], fraction: float = AGREEMENT_FRACTION) -> dict[tuple[str, str], float]:
    """Mean top-``fraction`` overlap of every pair of methods' maps over the images."""
    return {pair: float(v.mean()) for pair, v in agreement_per_image(maps, fraction).items()}


def agreement_rows(
    per_image: dict[tuple[str, str], np.ndarray], fraction: float = AGREEMENT_FRACTION, most: int = 6, least: int = 3
) -> list[dict[str, Any]]:
    """A short ranked table instead of a methods x methods one: the ``most`` and ``least`` agreeing pairs, each
    with its share of top pixels in common, its uncertainty over the images and whether that is above chance."""
    ranked = sorted(per_image, key=lambda p: -float(np.mean(per_image[p])))
    picks = ranked if len(ranked) <= most + least else ranked[:most] + ranked[-least:]
    rows = []
    for a, b in picks:
        values = per_image[(a, b)]
        gap = paired(values, np.full_like(values, fraction))
        error = gap.error
        verdict = "above chance" if np.isfinite(error) and gap.difference > Z * error else "not above chance"
        rows.append(
            {
                "rank": ranked.index((a, b)) + 1,
                "methods": f"{notes.method_name(a)} and {notes.method_name(b)}",
                "top pixels in common": notes.pct(float(np.mean(values))),
                "±": "–" if not np.isfinite(error) else notes.pct(error),
                "compared with chance": verdict if np.isfinite(error) else "one image: cannot tell",
            }
        )
    return rows


def cost_table(info: dict[str, MethodRun], images: int) -> list[dict[str, Any]]:
    """Per method: seconds and model passes per image, completeness error, options (or why it did not run)."""
    rows: list[dict[str, Any]] = []
    for m, i in info.items():
        if i.error is not None:
            rows.append({"method": notes.method_name(m), "seconds / image": None, "passes / image": None,
                         "note": i.error})  # fmt: skip
            continue
        note = " ".join(i.warnings)
        if i.same_as is not None:
            note = f"the same computation as {notes.method_name(i.same_as)} here (identical maps). {note}"
        rows.append(
            {
                "method": notes.method_name(m),
                "seconds / image": round(i.seconds / max(images, 1), 3),
                "passes / image": round(i.passes / max(images, 1), 1),
                "completeness error": None if i.relative_delta is None else notes.pct(i.relative_delta),
                "options": ", ".join(f"{k}={v}" for k, v in i.options.items()) or "defaults",
                "note": note.strip(),
            }
        )
    return rows


def cost_caption(images: int, setup: float | None) -> str:
    """The cost table's caption: what was timed and what was left out (``setup``: the model's warm-up; ``None``
    when the costs were measured elsewhere, e.g. by the run that filled a store)."""
    when = "as measured by the run that made them" if setup is None else (
        f"after a one-off warm-up of the model ({setup:.2f} s, left out)"
    )  # fmt: skip
    return (
        f"What each method cost on these {images} images: seconds per image {when}, passes = how many images the "
        "model had to look at per explained image"
    )


def duplicates_note(info: dict[str, MethodRun]) -> str | None:
    """Methods found to be the same computation, named once."""
    shown = [i.same_as_shown for i in info.values() if i.same_as_shown is not None]
    if not shown:
        return None
    listed = notes._join(shown)
    return (
        f"{listed} give identical maps on every image here: the same computation under different names (e.g. "
        "occlusion with non-overlapping windows is feature ablation on a grid), so each such group is shown once."
    )
