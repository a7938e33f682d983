"""`photo_report`: unlabeled photos, the model's top classes and every chosen method side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import CnnlensError
from .._progress import honours_progress
from ..viz import compare_panel
from . import _notes as notes
from ._explain import AGREEMENT_FRACTION, agreement_per_image, agreement_table, cost_table, families, run_methods
from ._figures import photo_grid
from ._html import Report
from ._options import Methods, resolve_methods
from ._story import as_classifier

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
    from .. import methods as registry

    if not isinstance(images, Mapping) or not images:
        raise CnnlensError("images must be a non-empty mapping of name -> image (a path, PIL image or array).")
    if int(top_k) < 1:
        raise CnnlensError(f"top_k must be at least 1; got {top_k}.")
    classifier = as_classifier(model)
    report = report if report is not None else Report(title or f"{classifier.name} on {len(images)} photos")
    size = tuple(classifier.preprocessing.input_size)
    chosen = resolve_methods(methods, [m.name for m in registry() if m.output != "layer"], size)
    names = list(images)
    x = classifier.preprocess(list(images.values()))
    predictions = classifier.predict(x, top_k=int(top_k))
    targets = [p[0][0] for p in predictions]
    maps, info = run_methods(classifier, x, targets, chosen, batch_size, seed, progress, "photos")
    pixels = classifier.preprocessing.to_pixels(x)
    per_image = agreement_per_image(maps)
    family = families()
    for i, name in enumerate(names):
        top = [(c, p) for _, c, p in predictions[i]]
        s = report.section(
            f"Photo: {name}",
            f"The model's {len(top)} most likely classes and, for its top class, the map of every method "
            "(bright = pixels that move the score most). These photos have no true label: the maps show what "
            "the model looks at, not whether it is right.",
        )
        s.table([{"rank": k + 1, "class": c, "probability": notes.pct(p)} for k, (c, p) in enumerate(top)])
        subset = {notes.method_name(m): maps[m][i] for m in COMPARE_METHODS if m in maps}
        if subset:
            s.figure(
                compare_panel(pixels[i], subset, top_k=top, predicted_label=top[0][0], title=name),
                f"{name}: the photo, its top classes and {len(subset)} methods",
            )
        grid = photo_grid(pixels[i], {m: a[i] for m, a in maps.items()}, top, title=name)
        s.figure(grid, f"{name}: every method", dpi=72)
        photo_said = [notes.photo_note(name, top)]
        photo_said += notes.agreement_notes({k: float(v[i]) for k, v in per_image.items()}, AGREEMENT_FRACTION, family)
        s.notes(photo_said)
    s = report.section(
        "Methods on the photos",
        f"How similar the methods' maps are (share of the {AGREEMENT_FRACTION:.0%} most important pixels in common, "
        "mean over the photos) and what each one cost. Slow methods were run with reduced options (listed).",
    )
    overlaps = {k: float(v.mean()) for k, v in per_image.items()}
    if len(maps) > 1:
        s.table(agreement_table(list(maps), overlaps), caption="Agreement between methods")
    s.table(cost_table(info, len(names)), caption="Cost per method (all photos in one call)")
    said = notes.agreement_notes(overlaps, AGREEMENT_FRACTION, family)
    said.append(notes.completeness_note({m: i.get("relative_delta") for m, i in info.items()}))
    s.notes([n for n in said if n])
    return report
