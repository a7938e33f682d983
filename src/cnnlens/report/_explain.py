"""The report's explanation sections: chosen errors and true positives explained by every method, the methods'
agreement and cost, where the evidence lies in words, and the quality scorecard."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import viz
from ..core.errors import CnnlensError
from . import _notes as notes
from ._claims import Lead, agreement_claims, best_note, how_measured, lead
from ._evidence import consensus, where_note
from ._figures import ALPHA, CMAP, SIGN, agreement_figure, maps_grid
from ._html import Report
from ._methods import (
    AGREEMENT_FRACTION,
    agreement_per_image,
    agreement_rows,
    cost_caption,
    cost_table,
    duplicates_note,
    families,
    merge_duplicates,
    warm_up,
)
from ._source import Computed
from ._words import column_title, column_words, table_words

MORE_ERRORS = 8  # misread images of the first group whose maps (gradient and CAM methods) say where evidence lies


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
    if not rows:  # no errors: the most confident correct image of up to three classes in the data
        for c in np.unique(ev.y_true)[:3]:
            tp = ev.groups.true_positives[ev.classes[c]]
            if len(tp):
                best = int(tp[np.argmax(ev.probabilities[tp, c])])
                rows.append((best, int(c), f"correct {ev.classes[c]}", 0))
    return rows


def _intro(errors: bool) -> str:
    maps = (
        " Red = pixels that speak for the explained class, blue = against it (the colour bar beside each figure); "
        "some methods (saliency, the CAMs) only say how much a pixel matters, never against, so they show red only."
    )
    if not errors:
        return (
            "The model makes no mistakes here, so we look at what its right answers rest on: the most confident "
            "correct image of up to three classes, explained by every method." + maps
        )
    return (
        "Which pixels drive each answer. For every misread image we ask two questions: what made the model say "
        "the wrong class, and what evidence it saw for the right one; correct images of both classes are shown "
        "for contrast. Gradient and CAM methods read the model's internals; perturbation methods hide parts of "
        "the image and watch the score." + maps
    )


def _extra_errors(ev: Any, groups: list[dict[str, Any]]) -> list[int]:
    return [int(r) for r in groups[0]["errors"][1:MORE_ERRORS]] if groups else []


def _where(ev, groups, rows, extra, pixels, extra_pixels, grad_maps, extra_maps) -> str | None:  # type: ignore[no-untyped-def]
    """The sentence on where the evidence for the first group's wrong class lies (`where_note`)."""
    if not groups or not grad_maps:
        return None
    g = groups[0]
    size = pixels.shape[1:3]
    err = [i for i, r in enumerate(rows) if r[3] == 0][0]  # evidence for the predicted class, first error
    misread = [(pixels[err], consensus([a[err] for a in grad_maps.values()], size))]
    misread += [(extra_pixels[j], consensus([a[j] for a in extra_maps.values()], size)) for j in range(len(extra))]
    correct = [
        (pixels[i], consensus([a[i] for a in grad_maps.values()], size))
        for i, r in enumerate(rows)
        if r[3] == 0 and r[2] == f"correct {g['predicted']}"
    ]
    return where_note(g["true"], g["predicted"], misread, correct, methods=len(grad_maps))


def computes(source: Computed) -> bool:
    """Whether ``source`` computes the maps and scores now (a store reads them: no warm-up, one seed)."""
    return type(source).explain is Computed.explain and type(source).scorecard is Computed.scorecard


def explain_rows(
    report: Report, classifier: Any, dataset: Any, ev: Any, groups: list[dict[str, Any]],
    gradient: dict[str, dict[str, Any]], perturbation: dict[str, dict[str, Any]],
    batch_size: int | None, seed: int, progress: bool, source: Computed | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The "Explanations" section; returns its notes, the sentence on where the evidence lies, a JSON-able
    summary, the inputs, the targets and the evaluation rows. ``source``: where the maps come from (default:
    computed now)."""
    source = source or Computed()
    rows = [r for r in _rows(ev, groups) if source.has(ev, r[0], r[1])]
    s = report.section("Explanations", _intro(bool(groups)))
    if not rows:
        s.text("No images to explain.")
        return {"notes": [], "where": None, "summary": {}, "x": None, "targets": None, "rows": None}
    wrong = ev.classes.index(groups[0]["predicted"]) if groups else None
    extra = [r for r in _extra_errors(ev, groups) if source.has(ev, r, wrong)]
    images = [dataset[int(ev.positions[r])][0] for r, _, _, _ in rows]
    extra_images = [dataset[int(ev.positions[r])][0] for r in extra]
    x = classifier.preprocess(images + extra_images)
    explained = [r for r, _, _, _ in rows]
    targets = [t for _, t, _, _ in rows] + [wrong] * len(extra)
    pixels_all = classifier.preprocessing.to_pixels(x)
    setup = warm_up(classifier, x) if computes(source) else None
    run = (classifier, x, ev, explained + extra, targets)
    grad_all, grad_info = source.explain(*run, gradient, batch_size, seed, progress, "gradient/CAM")
    n = len(rows)
    x, targets, pixels = x[:n], targets[:n], pixels_all[:n]
    grad_maps = {m: a[:n] for m, a in grad_all.items()}
    run = (classifier, x, ev, explained, targets)
    pert_maps, pert_info = source.explain(*run, perturbation, batch_size, seed, progress, "perturbation")
    where = _where(ev, groups, rows, extra, pixels, pixels_all[n:], grad_maps, {m: a[n:] for m, a in grad_all.items()})
    info = {**grad_info, **pert_info}
    all_maps = merge_duplicates({**grad_maps, **pert_maps}, info)
    origin = {i["same_as_shown"]: m for m, i in info.items() if "same_as_shown" in i}
    grad_shown = {m: a for m, a in all_maps.items() if origin.get(m, m) in grad_maps}
    pert_shown = {m: a for m, a in all_maps.items() if m not in grad_shown}
    for k in sorted({g for _, _, _, g in rows}):
        idx = [i for i, r in enumerate(rows) if r[3] == k]
        first = rows[idx[0]][0]
        if all_maps and ev.y_true[first] != ev.y_pred[first]:
            order = np.argsort(-ev.probabilities[first], kind="stable")[:3]
            top = [(ev.classes[int(c)], float(ev.probabilities[first, c])) for c in order]
            t, p = ev.classes[ev.y_true[first]], ev.classes[ev.y_pred[first]]
            panel = {notes.method_name(m): a[idx[0]] for m, a in all_maps.items()}
            fig = viz.compare_panel(pixels[idx[0]], panel, top_k=top, true_label=t, predicted_label=p,
                                    title=ev.ids[first], sign=SIGN, cmap=CMAP, alpha=ALPHA)  # fmt: skip
            s.figure(fig, f"{ev.ids[first]}: a {t} read as {p}, every method's evidence for {p}")
        label = rows[idx[0]][2].split(":")[0] if groups else "Correct images, one per class"
        for family, maps in (("gradient and CAM methods", grad_shown), ("perturbation methods", pert_shown)):
            if maps:
                fig = maps_grid(
                    [pixels[i] for i in idx], [rows[i][2] for i in idx], {m: a[idx] for m, a in maps.items()}
                )
                s.figure(fig, f"{label}: {family}")
    said = [where] if where else []
    per_image = agreement_per_image(all_maps)
    said += agreement_claims(per_image, AGREEMENT_FRACTION, families(list(all_maps)))
    if len(all_maps) > 1:
        s.table(
            agreement_rows(per_image),
            caption=f"Agreement: share of the {AGREEMENT_FRACTION:.0%} most important pixels two methods have in "
            f"common (mean over the {n} images above; chance would give {AGREEMENT_FRACTION:.0%}); the pairs that "
            "agree most and least",
        )
        if len(all_maps) >= 4:
            overlaps = {pair: float(v.mean()) for pair, v in per_image.items()}
            s.figure(agreement_figure(list(all_maps), overlaps, AGREEMENT_FRACTION), "Agreement of every two methods")
    s.table(cost_table(info, n), caption=cost_caption(n, setup))
    s.words({**column_words(["seconds_per_image", "passes_per_image"]), **table_words("completeness error")})
    said.append(duplicates_note(info))
    said.append(notes.completeness_note({m: i.get("relative_delta") for m, i in info.items()}))
    said = [t for t in said if t]
    failed = [m for m, i in info.items() if "error" in i]
    if failed:
        said.append(f"Not run on this model: {', '.join(notes.method_name(m) for m in failed)} (see the cost table).")
    s.notes(said)
    if len(all_maps) > 1:
        s.text(how_measured(n))
    summary = {
        "images": [{"id": ev.ids[r], "target": ev.classes[t], "title": title} for r, t, title, _ in rows],
        "methods": info,
        "agreement": {f"{a}|{b}": float(v.mean()) for (a, b), v in per_image.items()},
        "where": where,
    }
    return {"notes": said, "where": where, "summary": summary, "x": x, "targets": targets, "rows": explained, "ev": ev}


def scorecard_section(
    report: Report, classifier: Any, explained: dict[str, Any], gradient: dict[str, dict[str, Any]],
    perturbation: dict[str, dict[str, Any]], batch_size: int | None, seed: int, progress: bool,
    metrics: Any = None, source: Computed | None = None, seeds: int = 2,
) -> tuple[list[str], dict[str, Any] | None, dict[str, Lead | None]]:  # fmt: skip
    """The quality scorecard of the methods on the explained images, run with ``seeds`` seeds (``seed``,
    ``seed + 1``, ...: random methods and metrics draw anew; one when a store gives the scores); returns the
    notes, the first seed's ``Scorecard.to_dict()`` with the means over every seed and image, and the leader of
    each quality column. Nothing when no image was explained. ``metrics``: as `cnnlens.quality.scorecard` takes
    them (``None``: its default). A method is called best on a column only when it leads beyond the uncertainty
    over the images and seeds (`best_note`)."""
    if explained.get("x") is None:
        return [], None, {}
    from ..quality import COST

    source = source or Computed()
    seeds = max(1, int(seeds)) if computes(source) else 1

    methods = {**gradient, **perturbation}
    s = report.section(
        "How much to trust the explanations",
        "Measured quality of each method on the images above: whether deleting the pixels a map calls important "
        "really changes the answer (faithfulness), whether the map changes with the model's weights (sanity), "
        "whether it differs between classes, and what it costs. What each column means:",
    )
    try:
        cards = [
            source.scorecard(
                classifier, explained["x"], explained.get("ev"), explained["rows"], explained["targets"], methods,
                metrics, batch_size, seed + k, progress,
            )
            for k in range(seeds)
        ]  # fmt: skip
    except CnnlensError as err:
        s.text(f"The scorecard could not be computed: {err}")
        return [], None, {}
    sc = cards[0]
    higher = sc.higher_is_better
    grid = {c: {m: np.array([card.per_image[(m, c)] for card in cards]) for m in sc.methods} for c in sc.columns}
    means = {c: {m: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for m, v in grid[c].items()}
             for c in sc.columns}  # fmt: skip
    arrow = {True: " ↑", False: " ↓", None: ""}
    s.words(column_words(sc.columns))
    n = int(explained["x"].shape[0])
    s.table(
        [[notes.method_name(m), *(means[c][m] for c in sc.columns)] for m in sc.methods],
        columns=["method", *(column_title(c) + arrow[higher.get(c)] for c in sc.columns)],
        caption=f"Scorecard: means over the {n} images above and {len(cards)} seed(s) (↑ higher is better, ↓ lower "
        "is better)",
    )
    quality_columns = [c for c in sc.columns if higher.get(c) is not None and c not in COST]
    said = [best_note(column_title(c), grid[c], bool(higher[c])) for c in quality_columns]
    said = [t for t in said if t]
    s.notes(said)
    if said:
        s.text(how_measured(n, len(cards)))

    def clean(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    seeded = {m: {c: [[clean(v) for v in row] for row in grid[c][m]] for c in sc.columns} for m in sc.methods}
    summary = {
        **sc.to_dict(), "seeds": [seed + k for k in range(len(cards))], "per_seed": seeded,
        "means": {c: {m: clean(v) for m, v in means[c].items()} for c in sc.columns},
    }  # fmt: skip
    return said, summary, {column_title(c): lead(grid[c], bool(higher[c])) for c in quality_columns}
