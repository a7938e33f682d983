"""`photo_report`: unlabeled photos, the model's top classes and every chosen method side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.errors import CnnlensError
from ..core.progress import honours_progress
from ..viz import compare_panel
from . import _notes as notes
from ._claims import agreement_claims, how_measured
from ._evidence import photo_where_note
from ._figures import ALPHA, CMAP, SIGN, agreement_figure, photo_grid
from ._html import Report
from ._method_choice import Methods, resolve_methods
from ._methods import (
    AGREEMENT_FRACTION,
    agreement_per_image,
    agreement_rows,
    cost_caption,
    cost_table,
    duplicates_note,
    families,
    merge_duplicates,
    run_methods,
    shown_key,
    warm_up,
)
from ._records import Maps, MethodRun
from ._story import as_classifier
from ._words import column_words, table_words

COMPARE_METHODS = ("saliency", "integrated_gradients", "grad_cam", "occlusion")  # the compare panel's subset


@honours_progress
def photo_report(
    model: Any,
    images: Mapping[str, Any],
    report: Report | None = None,
    *,
    methods: Methods = None,
    top_k: int = 5,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    title: str | None = None,
) -> Report:
    """Add a section per photo (top-``top_k`` classes, every method's map for the top class) and a cost table.

    ``images``: name -> image (path, PIL image or array). ``methods``: names or name -> options (default: every
    registered method with input-sized maps, sized by `sized_options`). Returns ``report`` (a new one when ``None``); call
    ``.write(path)`` to save it.
    """
    from ..attribution import methods as registry

    if not isinstance(images, Mapping) or not images:
        raise CnnlensError("images must be a non-empty mapping of name -> image (a path, PIL image or array).")
    if int(top_k) < 1:
        raise CnnlensError(f"top_k must be at least 1; got {top_k}.")
    classifier = as_classifier(model)
    report = report if report is not None else Report(title or f"{classifier.name} on {len(images)} photos")
    size = tuple(classifier.preprocessing.input_size)
    chosen = resolve_methods(methods, [m.name for m in registry() if m.maps_pixels], size)
    names = list(images)
    x = classifier.preprocess(list(images.values()))
    predictions = classifier.predict(x, top_k=int(top_k))
    targets = [index for (index, _name, _probability), *_others in predictions]  # each image's top class
    setup = warm_up(classifier, x)
    maps, info = run_methods(
        classifier, x, targets, chosen, batch_size=batch_size, seed=seed, progress=progress, desc="photos"
    )
    maps = merge_duplicates(maps, info)
    pixels = classifier.preprocessing.to_pixels(x)
    for i, name in enumerate(names):
        top = [(c, p) for _, c, p in predictions[i]]
        _photo_section(report, name, pixels[i], top, maps={m: a[i] for m, a in maps.items()}, info=info)
    _methods_section(report, maps, info, len(names), setup)
    return report


def _photo_section(
    report: Report, name: str, pixels: np.ndarray, top: list[tuple[str, float]], *, maps: Maps,
    info: dict[str, MethodRun],
) -> None:  # fmt: skip
    """One photo's section: its ``top`` (class, probability) pairs, the compare panel and every method's map."""
    s = report.section(
        f"Photo: {name}",
        f"The model's {len(top)} most likely classes and, for its top class, the map of every method (red = "
        "pixels that speak for that class, blue = against it; see the colour bar). These photos have no true "
        "label: the maps show what the model looks at, not whether it is right.",
    )
    s.table([{"rank": k + 1, "class": c, "probability": notes.pct(p)} for k, (c, p) in enumerate(top)])
    label, _ = top[0]  # the model's answer
    keys = dict.fromkeys(shown_key(info, m) for m in COMPARE_METHODS if m in info)
    subset = {notes.method_name(k): maps[k] for k in keys if k in maps}
    if subset:
        panel = compare_panel(
            pixels, subset, top_k=top, predicted_label=label, title=name, sign=SIGN, cmap=CMAP, alpha=ALPHA
        )
        s.figure(panel, f"{name}: the photo, its top classes and {len(subset)} methods")
    s.figure(photo_grid(pixels, maps, top, title=name), f"{name}: every method")
    size = tuple(pixels.shape[:2])
    s.notes([notes.photo_note(name, top), photo_where_note(name, label, maps, size)])


def _methods_section(report: Report, maps: Maps, info: dict[str, MethodRun], images: int, setup: float) -> None:
    """The methods' agreement over the photos and what each cost."""
    s = report.section(
        "Methods on the photos",
        f"How similar the methods' maps are (share of the {AGREEMENT_FRACTION:.0%} most important pixels two "
        "methods have in common, over the photos) and what each one cost. Slow methods were run with reduced "
        "options (listed).",
    )
    per_image = agreement_per_image(maps)
    if len(maps) > 1:
        s.table(agreement_rows(per_image), caption="The pairs of methods that agree most and least")
    if len(maps) >= 4:
        overlaps = {k: float(v.mean()) for k, v in per_image.items()}
        s.figure(agreement_figure(list(maps), overlaps, AGREEMENT_FRACTION), "Agreement of every two methods")
    s.table(cost_table(info, images), caption=cost_caption(images, setup))
    s.words({**column_words(["seconds_per_image", "passes_per_image"]), **table_words("completeness error")})
    s.notes(
        [
            *agreement_claims(per_image, AGREEMENT_FRACTION, families(list(maps))),
            duplicates_note(info),
            notes.completeness_note({m: i.relative_delta for m, i in info.items()}),
        ]
    )
    if len(maps) > 1:
        s.text(how_measured(images))
