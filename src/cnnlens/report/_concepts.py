"""The report's concept sections: "What the model looks for in class X" for the most confused pair, and the
concepts one of its errors shares with the wrong class (``cnnlens.concepts``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._failures import ErrorGroup
from ._html import Report

# Report-sized settings: a few concepts, a small design (the library's default of 1024 is for precise indices).
REPORT_CONCEPTS: dict[str, Any] = {"n_concepts": 5, "images": 100, "designs": 128, "importance_images": 12}


POOR_FIDELITY = 0.5
"""Concepts that rebuild less of the class score's variance than this (R^2) are shown but not used to explain."""


def _fidelity_note(c: str, found: Any) -> str:
    """What the concepts of class ``c`` say, or that they say too little to be relied on."""
    rebuilt = f"the {found.n_concepts} concepts reproduce the class score with fidelity {found.fidelity:.2f} (R\u00b2; 1 = all of it"
    if found.fidelity < POOR_FIDELITY:
        worse = ", below 0: worse than a constant" if found.fidelity < 0 else ""
        return f"For {c}, {rebuilt}{worse}): too little to rely on what they show."
    return (
        f"The model's score for {c} depends most on concept 0 (it is involved in {found.importance[0]:.0%} of the "
        f"score's variance when concepts are dimmed at random); {rebuilt})."
    )


def _names(idx: Any) -> str:
    return ", ".join(f"concept {int(c)}" for c in idx) or "none"


def _extract(classifier: Any, dataset: Any, name: str, seed: int) -> Any:
    """The concepts of class ``name`` with the report's settings; ``None`` when the data has too few of its images."""
    from ..concepts import MIN_IMAGES, class_index, extract

    labels = getattr(dataset, "labels", None)
    if labels is not None and int((np.asarray(labels) == class_index(classifier, name, dataset)[0]).sum()) < MIN_IMAGES:
        return None
    return extract(classifier, dataset, name, seed=seed, **REPORT_CONCEPTS)


def concepts_section(
    report: Report, classifier: Any, dataset: Any, ev: Any, group: ErrorGroup, *, seed: int
) -> list[str]:
    """Concept galleries of the true and the predicted class of ``group`` (the most confused pair) and its most
    confident error in the concepts of both; returns the notes."""
    from ..viz import concept_gallery_figure, error_concepts_figure

    t, p = group.true_label, group.predicted_label
    found = {c: _extract(classifier, dataset, c, seed) for c in (t, p)}
    if found[t] is None:
        return []
    s = report.section(
        f"What the model looks for in class {t} (and in {p})",
        "Concepts are the parts of images the model responds to together, found without labels: the activations "
        f"of layer {found[t].layer} on the images of a class are split into a few non-negative parts (NMF, as in "
        "CRAFT and ICE). Each row shows one concept: how much the class score depends on it (Sobol importance: "
        "the share of the score's variance it causes when concepts are randomly dimmed), the image where it is "
        "strongest (bright = where it is) and the image crops where it is most typical. Fidelity says how much of "
        "the class score the concepts together reproduce (1 = all).",
    )
    shown = [c for c in (t, p) if found[c] is not None]
    for c in shown:
        s.figure(concept_gallery_figure(found[c], crops=5), f"The concepts of class {c}, most important first")
    said = [_fidelity_note(c, found[c]) for c in shown]
    poor = [c for c in shown if found[c].fidelity < POOR_FIDELITY]
    if found[p] is None:
        said.append(f"The data holds too few images of {p} to show its concepts.")
    elif poor:
        said.append(
            f"The concepts of {' and '.join(poor)} reproduce too little of the class score (fidelity below "
            f"{POOR_FIDELITY}) to explain the error with them; more concepts (cnnlens concepts --concepts) or "
            "another layer (--layer) may do better."
        )
    elif group.errors:
        image = dataset[int(ev.positions[group.errors[0]])][0]
        from ..concepts import explain_error

        error = explain_error(classifier.preprocess([image])[0], found[t], found[p])
        s.figure(error_concepts_figure(error), f"The most confidently misread {t} (read as {p}), in concepts")
        said.append(
            f"The {t} read as {p} shows {p}'s {_names(error.shown[:3])} and lacks {t}'s {_names(error.lacked[:3])}."
        )
    s.notes(said)
    return said
