"""The report's explanation sections: chosen errors and true positives explained by every method, the methods'
agreement and cost, and the quality scorecard (when `cnnlens.quality.scorecard` exists)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import torch

from .. import viz
from .._errors import CnnlensError, CnnlensWarning
from .._progress import progress_bar
from . import _notes as notes
from ._figures import maps_grid
from ._html import Report

AGREEMENT_FRACTION = 0.1  # share of the most important pixels compared between two maps


def _rows(ev: Any, groups: list[dict[str, Any]]) -> list[tuple[int, int, str, int]]:
    """(evaluation row, target class index, row title, group number) for each image and target explained."""
    rows = []
    for k, g in enumerate(groups):
        t, p = ev.classes.index(g["true"]), ev.classes.index(g["predicted"])
        err = g["errors"][0]
        rows.append((err, p, f"{g['true']} read as {g['predicted']}:\nevidence for {g['predicted']}", k))
        rows.append((err, t, f"{g['true']} read as {g['predicted']}:\nevidence for {g['true']}", k))
        if g["tp_true"]:
            rows.append((g["tp_true"][0], t, f"correct {g['true']}", k))
        if g["tp_predicted"]:
            rows.append((g["tp_predicted"][0], p, f"correct {g['predicted']}", k))
    if not rows:  # no errors: the most confident true positive of the first classes
        for c in ev.classes[:3]:
            tp = ev.groups.true_positives[c]
            if len(tp):
                best = int(tp[np.argmax(ev.probabilities[tp, ev.classes.index(c)])])
                rows.append((best, ev.classes.index(c), f"correct {c}", 0))
    return rows


def run_methods(
    classifier: Any, x: torch.Tensor, targets: Any, methods: dict[str, dict[str, Any]], batch_size: int | None,
    seed: int, progress: bool, desc: str = "explaining",
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:  # fmt: skip
    """Run each method once on the whole batch; returns maps and, per method, seconds, passes, options and the
    warnings it gave (or the error that stopped it: a method that cannot run on this model is listed, not
    hidden)."""
    from .. import explain

    maps, info = {}, {}
    for m, opts in progress_bar(methods.items(), desc=desc, unit="method"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CnnlensWarning)
                e = explain(classifier, x, m, target=targets, batch_size=batch_size, seed=seed, **opts)
        except CnnlensError as err:
            info[m] = {"error": str(err), "options": opts}
            continue
        for w in caught:  # other warnings go on as they came; ours are listed in the cost table
            if not issubclass(w.category, CnnlensWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        maps[m] = e.attributions.detach().float().cpu().numpy()
        rel = None
        if e.delta is not None:
            gap = e.attributions.flatten(1).sum(1) - e.delta
            rel = float((e.delta.abs() / gap.abs().clamp_min(1e-12)).mean())
        said = sorted({str(w.message) for w in caught if issubclass(w.category, CnnlensWarning)})
        info[m] = {
            "seconds": round(e.seconds, 3), "passes": round(float(e.passes), 2), "options": opts, "relative_delta": rel,
            "warnings": said,
        }  # fmt: skip
    return maps, info


def families() -> dict[str, str]:
    """Method name -> its family, the registry's category (gradient, cam, perturbation). Guided Grad-CAM is left
    out: it is guided backprop masked by Grad-CAM, a relative of both families."""
    from .. import methods

    return {m.name: m.category for m in methods() if m.name != "guided_grad_cam"}


def agreement_per_image(
    maps: dict[str, np.ndarray], fraction: float = AGREEMENT_FRACTION
) -> dict[tuple[str, str], np.ndarray]:
    """Top-``fraction`` overlap (`topk_overlap`) of every pair of methods' maps, one value per image."""
    top = {m: [notes.top_pixels(a, fraction)[0] for a in maps[m]] for m in maps}
    return {
        (a, b): np.array(
            [len(np.intersect1d(u, v, assume_unique=True)) / len(u) for u, v in zip(top[a], top[b], strict=True)]
        )
        for a, b in itertools.combinations(maps, 2)
    }


def agreement(maps: dict[str, np.ndarray], fraction: float = AGREEMENT_FRACTION) -> dict[tuple[str, str], float]:
    """Mean top-``fraction`` overlap of every pair of methods' maps over the images."""
    return {pair: float(v.mean()) for pair, v in agreement_per_image(maps, fraction).items()}


def agreement_table(methods: list[str], overlaps: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """A symmetric method x method table of overlaps, in percent."""
    rows = []
    for a in methods:
        row: dict[str, Any] = {"method": notes.method_name(a)}
        for b in methods:
            v = 1.0 if a == b else overlaps.get((a, b), overlaps.get((b, a)))
            row[notes.method_name(b)] = "–" if v is None else f"{100 * v:.0f}%"
        rows.append(row)
    return rows


def cost_table(info: dict[str, dict[str, Any]], images: int) -> list[dict[str, Any]]:
    """Per method: seconds and model passes per image, completeness error, options (or why it did not run)."""
    rows = []
    for m, i in info.items():
        if "error" in i:
            rows.append({"method": notes.method_name(m), "seconds": None, "passes per image": None, "note": i["error"]})
            continue
        rows.append(
            {
                "method": notes.method_name(m),
                "seconds": round(i["seconds"], 2),
                "passes per image": round(i["passes"] / max(images, 1), 1),
                "completeness error": None if i["relative_delta"] is None else notes.pct(i["relative_delta"]),
                "options": ", ".join(f"{k}={v}" for k, v in i["options"].items()) or "defaults",
                "note": " ".join(i.get("warnings", [])),
            }
        )
    return rows


def explain_rows(
    report: Report, classifier: Any, dataset: Any, ev: Any, groups: list[dict[str, Any]],
    gradient: dict[str, dict[str, Any]], perturbation: dict[str, dict[str, Any]],
    batch_size: int | None, seed: int, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """The "Explanations" section; returns its notes, a JSON-able summary, the inputs and the targets."""
    rows = _rows(ev, groups)
    s = report.section(
        "Explanations",
        "Which pixels drive each answer. For every misread image we ask two questions: what made the model say "
        "the wrong class, and what evidence it saw for the right one; correct images of both classes are shown "
        "for contrast. Gradient and CAM methods read the model's internals; perturbation methods hide parts of "
        "the image and watch the score. Bright = pixels that move the explained score most.",
    )
    if not rows:
        s.text("No images to explain.")
        return {"notes": [], "summary": {}, "x": None, "targets": None}
    images = [dataset[int(ev.positions[r])][0] for r, _, _, _ in rows]
    x = classifier.preprocess(images)
    targets = [t for _, t, _, _ in rows]
    pixels = classifier.preprocessing.to_pixels(x)
    grad_maps, grad_info = run_methods(classifier, x, targets, gradient, batch_size, seed, progress, "gradient/CAM")
    pert_maps, pert_info = run_methods(classifier, x, targets, perturbation, batch_size, seed, progress, "perturbation")
    all_maps = {**grad_maps, **pert_maps}
    for k in sorted({g for _, _, _, g in rows}):
        idx = [i for i, r in enumerate(rows) if r[3] == k]
        first = rows[idx[0]][0]
        if all_maps and ev.y_true[first] != ev.y_pred[first]:
            order = np.argsort(-ev.probabilities[first], kind="stable")[:3]
            top = [(ev.classes[int(c)], float(ev.probabilities[first, c])) for c in order]
            t, p = ev.classes[ev.y_true[first]], ev.classes[ev.y_pred[first]]
            panel = {notes.method_name(m): a[idx[0]] for m, a in all_maps.items()}
            fig = viz.compare_panel(
                pixels[idx[0]], panel, top_k=top, true_label=t, predicted_label=p, title=ev.ids[first]
            )
            s.figure(fig, f"{ev.ids[first]}: a {t} read as {p}, every method's evidence for {p}")
        for family, maps in (("gradient and CAM methods", grad_maps), ("perturbation methods", pert_maps)):
            if maps:
                fig = maps_grid(
                    [pixels[i] for i in idx], [rows[i][2] for i in idx], {m: a[idx] for m, a in maps.items()}
                )
                s.figure(fig, f"{rows[idx[0]][2].split(':')[0]}: {family}")
    overlaps = agreement(all_maps)
    said = notes.agreement_notes(overlaps, AGREEMENT_FRACTION, families())
    if len(all_maps) > 1:
        s.table(
            agreement_table(list(all_maps), overlaps),
            caption=f"Agreement: share of the {AGREEMENT_FRACTION:.0%} most important pixels two methods have in "
            "common (mean over the images above)",
        )
    info = {**grad_info, **pert_info}
    s.table(cost_table(info, len(rows)), caption="What each method cost on these images")
    said.append(notes.completeness_note({m: i.get("relative_delta") for m, i in info.items()}))
    said = [n for n in said if n]
    failed = [m for m, i in info.items() if "error" in i]
    if failed:
        said.append(f"Not run on this model: {', '.join(notes.method_name(m) for m in failed)} (see the cost table).")
    s.notes(said)
    summary = {
        "images": [{"id": ev.ids[r], "target": ev.classes[t], "title": title} for r, t, title, _ in rows],
        "methods": info,
        "agreement": {f"{a}|{b}": v for (a, b), v in overlaps.items()},
    }
    return {"notes": said, "summary": summary, "x": x, "targets": targets}


def scorecard_section(
    report: Report, classifier: Any, explained: dict[str, Any], gradient: dict[str, dict[str, Any]],
    perturbation: dict[str, dict[str, Any]], batch_size: int | None, seed: int, progress: bool,
) -> tuple[list[str], dict[str, Any] | None]:  # fmt: skip
    """The quality scorecard of the methods on the explained images (notes, ``Scorecard.to_dict()``); nothing
    when no image was explained."""
    if explained.get("x") is None:
        return [], None
    from .. import quality

    methods = {**gradient, **perturbation}
    s = report.section(
        "How much to trust the explanations",
        "Measured quality of each method on the images above: whether deleting the pixels a map calls important "
        "really changes the answer (faithfulness), whether the map changes with the model's weights (sanity), "
        "whether it differs between classes, and what it costs.",
    )
    try:
        sc = quality.scorecard(
            classifier, explained["x"], methods, target=explained["targets"], batch_size=batch_size, seed=seed,
            progress=progress,
        )  # fmt: skip
    except CnnlensError as err:
        s.text(f"The scorecard could not be computed: {err}")
        return [], None
    higher = sc.higher_is_better
    arrow = {True: " ↑", False: " ↓", None: ""}
    s.table(
        [[notes.method_name(r["method"]), *(r[c] for c in sc.columns)] for r in sc.rows],
        columns=["method", *(c + arrow[higher.get(c)] for c in sc.columns)],
        caption="Scorecard: means over the images above (↑ higher is better, ↓ lower is better; "
        "see cnnlens.quality.metrics())",
    )
    best = {}
    for c in sc.columns:
        try:
            if higher.get(c) is not None:
                best[c] = (sc.best(c), bool(higher[c]))
        except CnnlensError:  # no method has a value in this column
            continue
    said = notes.scorecard_notes(best)
    s.notes(said)
    return said, sc.to_dict()
