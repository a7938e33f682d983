"""Every number a report shows, explained in plain words where it appears: the scorecard's columns (one entry per
registered quality metric, checked by a test) and the cost columns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """A column's short plain ``title`` and what it means in plain words."""

    title: str
    meaning: str


METRIC_WORDS: dict[str, Term] = {
    "deletion": Term(
        "deletion",
        "The pixels the map calls most important are greyed out step by step; a faithful map makes the model's "
        "confidence fall fast, so a small area under that curve is better.",
    ),
    "insertion": Term(
        "insertion",
        "The most important pixels are put back step by step into a blurred image; a faithful map brings the "
        "confidence back fast, so a large area is better.",
    ),
    "road": Term(
        "ROAD",
        "Like deletion, but removed pixels are filled in from their neighbours so the model is not fooled by "
        "odd grey patches: the confidence lost removing the least important pixels minus that lost removing the "
        "most important. Higher is better.",
    ),
    "sensitivity_max": Term(
        "max-sensitivity",
        "How much the map changes when the image is changed by an invisible amount (largest relative change). "
        "Lower is better: a stable map.",
    ),
    "randomization_check": Term(
        "randomization",
        "How similar the map stays when the model's trained weights are replaced by random ones (rank "
        "correlation). A map that explains this model should change, so lower is better.",
    ),
    "class_discrimination": Term(
        "class discrimination",
        "How similar the maps for the explained class and the next most likely class are (rank correlation). "
        "Lower is better: the map is specific to the class.",
    ),
    "detail": Term(
        "detail",
        "The effective resolution of the map: how many cells across it has (higher = finer). Neither better "
        "nor worse; CAMs are coarse by design.",
    ),
    "infidelity": Term(
        "infidelity",
        "How badly the map predicts the change in score when the image is perturbed with noise (squared "
        "error). Lower is better.",
    ),
    "completeness": Term(
        "completeness error",
        "For methods whose attributions should add up to the score difference they explain: how far they miss "
        "it, as a share of it. Lower is better.",
    ),
    "pointing_game": Term(
        "pointing game",
        "1 when the map's strongest pixel lies on the object (given boxes or masks), else 0. Higher is better.",
    ),
}

COST_WORDS: dict[str, Term] = {
    "passes_per_image": Term(
        "passes / image",
        "How many times the model had to look at an image (forward passes) to explain one image; a backward "
        "pass rides along with its forward pass.",
    ),
    "seconds_per_image": Term(
        "seconds / image",
        "Time to explain one image after a warm-up run, including work outside the model (e.g. FullGrad "
        "upsamples every layer's map: time, not passes).",
    ),
    "setup_seconds": Term(
        "set-up (s)",
        "One-off time of the first run (loading code paths, allocating memory), which later images do not pay.",
    ),
}


def column_title(column: str) -> str:
    """A short plain title for a scorecard column (``sensitivity_max`` -> ``max-sensitivity``)."""
    words = METRIC_WORDS.get(column) or COST_WORDS.get(column)
    return words.title if words else column.replace("_", " ")


def column_words(columns: list[str]) -> dict[str, str]:
    """Title -> meaning for each of ``columns`` that has words (in their order)."""
    found = {c: METRIC_WORDS.get(c) or COST_WORDS.get(c) for c in columns}
    return {w.title: w.meaning for w in found.values() if w}


TABLE_WORDS: dict[str, str] = {
    "accuracy": "Share of the images the model answers right.",
    "no-information rate": "What always answering the most common class would score; a useful model beats it clearly.",
    "top-3 accuracy": "Share of the images whose true class is among the model's three most likely answers.",
    "precision": "Of the model's answers for a class, the share that are right.",
    "recall": "Of the images of a class, the share the model finds.",
    "F1": "One number for precision and recall together (their harmonic mean): 1 is perfect, 0 is useless.",
    "AUC": "How well the model's scores separate a class from the others, whatever threshold is used: 1 is "
    "perfect, 0.5 is guessing. Macro = the mean over the classes.",
    "completeness error": "For methods whose attributions should add up to the score difference they explain: "
    "how far they miss it, as a share of it.",
    "options": "The settings the method ran with (slow methods run with smaller settings in a report).",
}


def table_words(*terms: str) -> dict[str, str]:
    """Term -> meaning for the given table columns (in their order)."""
    return {t: TABLE_WORDS[t] for t in terms}
