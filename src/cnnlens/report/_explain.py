"""The report's explanation sections: chosen errors and true positives explained by every method, the methods'
agreement and cost, where the evidence lies in words, and the quality scorecard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import viz
from ..core.errors import CnnlensError
from . import _notes as notes
from ._claims import Lead, agreement_claims, best_note, how_measured, lead
from ._evidence import consensus, where_note
from ._failures import ErrorGroup
from ._figures import ALPHA, CMAP, SIGN, agreement_figure, maps_grid
from ._html import Report, Section
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
from ._records import ExplainedImages, Maps, MethodRun
from ._source import Computed, Source
from ._words import column_title, column_words, table_words

MORE_ERRORS = 8  # misread images of the first group whose maps (gradient and CAM methods) say where evidence lies


@dataclass(frozen=True)
class ExplainedRow:
    """One image and class the "Explanations" section explains: its ``row`` in the evaluation, the ``target``
    class index, the row's ``title`` and the number of its error ``group``."""

    row: int
    target: int
    title: str
    group: int


@dataclass(frozen=True)
class Explained:
    """What the "Explanations" section found: its ``notes``, the sentence on ``where`` the evidence lies, a
    JSON-able ``summary``, and the ``images`` it explained (``None`` when none)."""

    notes: list[str]
    where: str | None
    summary: dict[str, Any]
    images: ExplainedImages | None


def _rows(ev: Any, groups: list[ErrorGroup]) -> list[ExplainedRow]:
    """Each image and target explained: per group, its first error for both classes and a correct image of each."""
    rows = []
    for k, g in enumerate(groups):
        t, p = ev.classes.index(g.true_label), ev.classes.index(g.predicted_label)
        err = g.errors[0]
        misread = f"{g.true_label} read as {g.predicted_label}"
        rows.append(ExplainedRow(err, p, f"{misread}:\nevidence for {g.predicted_label}", k))
        rows.append(ExplainedRow(err, t, f"{misread}:\nevidence for {g.true_label}", k))
        if g.correct_true:
            rows.append(ExplainedRow(g.correct_true[0], t, f"correct {g.true_label}", k))
        if g.correct_predicted:
            rows.append(ExplainedRow(g.correct_predicted[0], p, f"correct {g.predicted_label}", k))
    if not rows:  # no errors: the most confident correct image of up to three classes in the data
        for c in np.unique(ev.y_true)[:3]:
            tp = ev.groups.true_positives[ev.classes[c]]
            if len(tp):
                best = int(tp[np.argmax(ev.probabilities[tp, c])])
                rows.append(ExplainedRow(best, int(c), f"correct {ev.classes[c]}", 0))
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


def _extra_errors(ev: Any, groups: list[ErrorGroup], source: Source) -> list[tuple[int, int]]:
    """(row, target) of the first group's further errors that ``source`` can explain, each for its wrong class."""
    if not groups:
        return []
    wrong = ev.classes.index(groups[0].predicted_label)
    return [(int(r), wrong) for r in groups[0].errors[1:MORE_ERRORS] if source.has(ev, int(r), wrong)]


def _where(
    group: ErrorGroup | None, rows: list[ExplainedRow], pixels: np.ndarray, maps: Maps, *, extra_pixels: np.ndarray,
    extra_maps: Maps,
) -> str | None:  # fmt: skip
    """The sentence on where the evidence for the first group's wrong class lies (`where_note`), from the
    gradient and CAM ``maps`` of the explained images and those of the group's further errors (``extra_``)."""
    if group is None or not maps:
        return None
    size = pixels.shape[1:3]

    def evidence(i: int, of: Maps) -> np.ndarray:
        return consensus([a[i] for a in of.values()], size)

    err = next(i for i, r in enumerate(rows) if r.group == 0)  # evidence for the predicted class, first error
    misread = [(pixels[err], evidence(err, maps))]
    misread += [(extra_pixels[j], evidence(j, extra_maps)) for j in range(len(extra_pixels))]
    correct = [
        (pixels[i], evidence(i, maps))
        for i, r in enumerate(rows)
        if r.group == 0 and r.title == f"correct {group.predicted_label}"
    ]
    return where_note(group.true_label, group.predicted_label, misread, correct, methods=len(maps))


def explain_rows(
    report: Report, classifier: Any, dataset: Any, ev: Any, groups: list[ErrorGroup], *,
    gradient: dict[str, dict[str, Any]], perturbation: dict[str, dict[str, Any]], batch_size: int | None,
    seed: int, progress: bool, source: Source | None = None,
) -> Explained:  # fmt: skip
    """The "Explanations" section; returns its notes, the sentence on where the evidence lies, a JSON-able
    summary and the images explained. ``source``: where the maps come from (default: computed now)."""
    source = source or Computed()
    rows = [r for r in _rows(ev, groups) if source.has(ev, r.row, r.target)]
    s = report.section("Explanations", _intro(bool(groups)))
    if not rows:
        s.text("No images to explain.")
        return Explained(notes=[], where=None, summary={}, images=None)
    extra_pairs = _extra_errors(ev, groups, source)
    extra = [r for r, _ in extra_pairs]
    x = classifier.preprocess([dataset[int(ev.positions[r])][0] for r in [*(r.row for r in rows), *extra]])
    n = len(rows)
    explained = [r.row for r in rows]
    targets = [r.target for r in rows]
    pixels_all = classifier.preprocessing.to_pixels(x)
    setup = warm_up(classifier, x) if source.computes else None
    both = ExplainedImages(classifier, x, ev, explained + extra, targets + [t for _, t in extra_pairs])
    grad_all, grad_info = source.explain(
        both, gradient, batch_size=batch_size, seed=seed, progress=progress, desc="gradient/CAM"
    )
    images = ExplainedImages(classifier, x[:n], ev, explained, targets)
    pert_maps, pert_info = source.explain(
        images, perturbation, batch_size=batch_size, seed=seed, progress=progress, desc="perturbation"
    )
    pixels = pixels_all[:n]
    grad_maps = {m: a[:n] for m, a in grad_all.items()}
    where = _where(
        groups[0] if groups else None, rows, pixels, grad_maps, extra_pixels=pixels_all[n:],
        extra_maps={m: a[n:] for m, a in grad_all.items()},
    )  # fmt: skip
    info = {**grad_info, **pert_info}
    all_maps = merge_duplicates({**grad_maps, **pert_maps}, info)
    _figures(s, ev, rows, pixels, all_maps=all_maps, info=info, grad_methods=set(grad_maps), errors=bool(groups))
    per_image = agreement_per_image(all_maps)
    said = _agreement_and_cost(s, per_image, info, methods=list(all_maps), images=n, setup=setup, where=where)
    summary = {
        "images": [{"id": ev.ids[r.row], "target": ev.classes[r.target], "title": r.title} for r in rows],
        "methods": {m: i.to_dict() for m, i in info.items()},
        "agreement": {f"{a}|{b}": float(v.mean()) for (a, b), v in per_image.items()},
        "where": where,
    }
    return Explained(notes=said, where=where, summary=summary, images=images)


def _figures(
    s: Section, ev: Any, rows: list[ExplainedRow], pixels: np.ndarray, *, all_maps: Maps, info: dict[str, MethodRun],
    grad_methods: set[str], errors: bool,
) -> None:  # fmt: skip
    """Per group: every method's evidence for the misread image's answer, then its images in a grid of the
    gradient and CAM methods' maps and one of the perturbation methods' maps."""
    origin = {i.same_as_shown: m for m, i in info.items() if i.same_as_shown is not None}
    grad_shown = {m: a for m, a in all_maps.items() if origin.get(m, m) in grad_methods}
    pert_shown = {m: a for m, a in all_maps.items() if m not in grad_shown}
    for k in sorted({r.group for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.group == k]
        first = rows[idx[0]].row
        if all_maps and ev.y_true[first] != ev.y_pred[first]:
            order = np.argsort(-ev.probabilities[first], kind="stable")[:3]
            top = [(ev.classes[int(c)], float(ev.probabilities[first, c])) for c in order]
            t, p = ev.classes[ev.y_true[first]], ev.classes[ev.y_pred[first]]
            panel = {notes.method_name(m): a[idx[0]] for m, a in all_maps.items()}
            fig = viz.compare_panel(pixels[idx[0]], panel, top_k=top, true_label=t, predicted_label=p,
                                    title=ev.ids[first], sign=SIGN, cmap=CMAP, alpha=ALPHA)  # fmt: skip
            s.figure(fig, f"{ev.ids[first]}: a {t} read as {p}, every method's evidence for {p}")
        label = rows[idx[0]].title.split(":")[0] if errors else "Correct images, one per class"
        for family, maps in (("gradient and CAM methods", grad_shown), ("perturbation methods", pert_shown)):
            if maps:
                fig = maps_grid(
                    [pixels[i] for i in idx], [rows[i].title for i in idx], {m: a[idx] for m, a in maps.items()}
                )
                s.figure(fig, f"{label}: {family}")


def _agreement_and_cost(
    s: Section, per_image: dict[tuple[str, str], np.ndarray], info: dict[str, MethodRun], *, methods: list[str],
    images: int, setup: float | None, where: str | None,
) -> list[str]:  # fmt: skip
    """The agreement of the ``methods`` shown (``per_image``: of every two, `agreement_per_image`) as a table, a
    figure and claims, and the cost of each method in ``info`` on the explained ``images``; returns the notes."""
    n = images
    said = [where] if where else []
    said += agreement_claims(per_image, AGREEMENT_FRACTION, families(methods))
    if len(methods) > 1:
        s.table(
            agreement_rows(per_image),
            caption=f"Agreement: share of the {AGREEMENT_FRACTION:.0%} most important pixels two methods have in "
            f"common (mean over the {n} images above; chance would give {AGREEMENT_FRACTION:.0%}); the pairs that "
            "agree most and least",
        )
        if len(methods) >= 4:
            overlaps = {pair: float(v.mean()) for pair, v in per_image.items()}
            s.figure(agreement_figure(methods, overlaps, AGREEMENT_FRACTION), "Agreement of every two methods")
    s.table(cost_table(info, n), caption=cost_caption(n, setup))
    s.words({**column_words(["seconds_per_image", "passes_per_image"]), **table_words("completeness error")})
    ends = (duplicates_note(info), notes.completeness_note({m: i.relative_delta for m, i in info.items()}))
    said += [t for t in ends if t]
    failed = [m for m, i in info.items() if i.error is not None]
    if failed:
        said.append(f"Not run on this model: {', '.join(notes.method_name(m) for m in failed)} (see the cost table).")
    s.notes(said)
    if len(methods) > 1:
        s.text(how_measured(n))
    return said


@dataclass(frozen=True)
class Trust:
    """What the scorecard section found: its ``notes``, the first seed's ``Scorecard.to_dict()`` with the means
    over every seed and image (``scorecard``; ``None`` when there is none) and the leader of each quality column
    (``leads``, by column title)."""

    notes: list[str]
    scorecard: dict[str, Any] | None
    leads: dict[str, Lead | None]


def scorecard_section(
    report: Report, explained: Explained, *, gradient: dict[str, dict[str, Any]],
    perturbation: dict[str, dict[str, Any]], batch_size: int | None, seed: int, progress: bool,
    metrics: Any = None, source: Source | None = None, seeds: int = 2,
) -> Trust:  # fmt: skip
    """The quality scorecard of the methods on the explained images, run with ``seeds`` seeds (``seed``,
    ``seed + 1``, ...: random methods and metrics draw anew; one when a store gives the scores); returns the
    notes, the first seed's ``Scorecard.to_dict()`` with the means over every seed and image, and the leader of
    each quality column. Nothing when no image was explained. ``metrics``: as `cnnlens.quality.scorecard` takes
    them (``None``: its default). A method is called best on a column only when it leads beyond the uncertainty
    over the images and seeds (`best_note`)."""
    if explained.images is None:
        return Trust(notes=[], scorecard=None, leads={})
    from ..quality import COST

    source = source or Computed()
    seeds = max(1, int(seeds)) if source.computes else 1
    s = report.section(
        "How much to trust the explanations",
        "Measured quality of each method on the images above: whether deleting the pixels a map calls important "
        "really changes the answer (faithfulness), whether the map changes with the model's weights (sanity), "
        "whether it differs between classes, and what it costs. What each column means:",
    )
    ran = explained.summary.get("methods", {})
    scored = {m: o for m, o in {**gradient, **perturbation}.items() if not ran.get(m, {}).get("same_as")}
    label = {m: ran.get(m, {}).get("same_as_shown") or notes.method_name(m) for m in scored}  # a duplicate: once
    try:
        cards = _cards(source, explained.images, scored, metrics=metrics,
                       batch_size=batch_size, seeds=range(seed, seed + seeds), progress=progress)  # fmt: skip
    except CnnlensError as err:
        s.text(f"The scorecard could not be computed: {err}")
        return Trust(notes=[], scorecard=None, leads={})
    sc = cards[0]
    higher = sc.higher_is_better
    grid = {c: {m: np.array([card.per_image[(m, c)] for card in cards]) for m in sc.methods} for c in sc.columns}
    means = {c: {m: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for m, v in grid[c].items()}
             for c in sc.columns}  # fmt: skip
    arrow = {True: " ↑", False: " ↓", None: ""}
    s.words(column_words(sc.columns))
    n = int(explained.images.inputs.shape[0])
    s.table(
        [[label.get(m, m), *(means[c][m] for c in sc.columns)] for m in sc.methods],
        columns=["method", *(column_title(c) + arrow[higher.get(c)] for c in sc.columns)],
        caption=f"Scorecard: means over the {n} images above and {len(cards)} seed(s) (↑ higher is better, ↓ lower "
        "is better)",
    )
    quality_columns = [c for c in sc.columns if higher.get(c) is not None and c not in COST]
    named = {c: {label.get(m, m): v for m, v in grid[c].items()} for c in quality_columns}
    found = (best_note(column_title(c), named[c], bool(higher[c])) for c in quality_columns)
    said = [t for t in found if t]
    s.notes(said)
    if said:
        s.text(how_measured(n, len(cards)))
    leads = {column_title(c): lead(named[c], bool(higher[c])) for c in quality_columns}
    return Trust(notes=said, scorecard=_summary(sc, grid, means, seeds=list(range(seed, seed + len(cards)))),
                 leads=leads)  # fmt: skip


def _cards(
    source: Source, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, metrics: Any,
    batch_size: int | None, seeds: range, progress: bool,
) -> list[Any]:  # fmt: skip
    """One `Scorecard` per seed."""
    return [
        source.scorecard(images, methods, metrics=metrics, batch_size=batch_size, seed=k, progress=progress)
        for k in seeds
    ]


def _summary(
    sc: Any, grid: dict[str, dict[str, np.ndarray]], means: dict[str, dict[str, float]], *, seeds: list[int]
) -> dict[str, Any]:
    """The first seed's ``Scorecard.to_dict()`` with the seeds, every value per seed and image and the means (NaN
    as ``None``)."""

    def clean(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    seeded = {m: {c: [[clean(v) for v in row] for row in grid[c][m]] for c in sc.columns} for m in sc.methods}
    return {
        **sc.to_dict(), "seeds": seeds, "per_seed": seeded,
        "means": {c: {m: clean(v) for m, v in means[c].items()} for c in sc.columns},
    }  # fmt: skip
