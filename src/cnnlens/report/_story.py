"""`model_report`: seed 000's story for a labelled data set, from evaluation to explanations, as one HTML file."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError, unknown_name
from ..core.files import OutputFolder, output_folder, write_json
from ..core.progress import honours_progress, progress_bar
from . import _notes as notes
from ._concepts import concepts_section
from ._conclusions import conclusions
from ._explain import Explained, Trust, explain_rows, scorecard_section
from ._failures import ErrorGroup, error_groups, failures_section
from ._html import Report
from ._inside import inside_section
from ._method_choice import GRADIENT_METHODS, PERTURBATION_METHODS, Methods, resolve_methods
from ._source import Computed, Source
from ._words import table_words


def as_classifier(model: Any) -> Any:
    """A Classifier with preprocessing, from a Classifier or anything `load_model` takes."""
    from ..models import Classifier, load_model

    classifier = model if isinstance(model, Classifier) else load_model(model)
    if classifier.preprocessing is None:
        raise CnnlensError(
            "The report needs a model that can take images: give load_model(..., preprocessing=...) "
            "or a bundled model name such as 'digits_cnn'."
        )
    return classifier


def _datasets(data: Any, classifier: Any) -> dict[str, Any]:
    from ..data import open_dataset

    def one(d: Any) -> Any:
        if isinstance(d, (str, os.PathLike)):
            return open_dataset(str(d), classes=classifier.class_names)
        if isinstance(d, tuple) or not (hasattr(d, "__len__") and hasattr(d, "__getitem__")):
            raise CnnlensError(
                f"The report needs a dataset of images (dataset[i] -> (image, label), e.g. ImageFolder, CsvImages, "
                f"ArrayImages, digits(...)) or a spec such as 'digits:field'; got {type(d).__name__}."
            )
        return d

    if isinstance(data, Mapping):
        if not data:
            raise CnnlensError("data is an empty mapping; give at least one name -> dataset.")
        return {str(k): one(v) for k, v in data.items()}
    if isinstance(data, (str, os.PathLike)):
        return {str(data): one(data)}
    return {str(getattr(data, "name", "data")): one(data)}


def _confidences(ev: Any, wrong: bool) -> np.ndarray:
    """The probability the model gave its answer, on the images it got wrong (or right)."""
    rows = np.flatnonzero((ev.y_true != ev.y_pred) if wrong else (ev.y_true == ev.y_pred))
    return np.asarray(ev.probabilities[rows, ev.y_pred[rows]], dtype=float)


def _mean_confidence(ev: Any, wrong: bool) -> float:
    values = _confidences(ev, wrong)
    return float(values.mean()) if len(values) else float("nan")


def accuracy_row(name: str, ev: Any) -> dict[str, Any]:
    """One row of the accuracy table of evaluation ``ev`` of data set ``name``; top-3 accuracy only where it can be
    below 100% (more than three classes), scores with three decimals."""
    return {
        "data": name,
        "images": len(ev.y_true),
        "skipped": len(ev.skipped),
        "accuracy": notes.pct(ev.accuracy),
        "no-information rate": notes.pct(ev.no_information_rate),
        **({"top-3 accuracy": notes.pct(ev.top_k_accuracy(3))} if len(ev.classes) > 3 else {}),
        "macro F1": f"{ev.averages['macro']['f1']:.3f}",
        "macro AUC": f"{ev.roc_auc['macro']:.3f}",
    }


TABLE_CLASSES = 20
"""Most classes a per-class table lists (the others: see metrics.json)."""


def _class_list(ev: Any, limit: int = TABLE_CLASSES) -> str:
    """``10: 0, 1, ..., 9``; with more than ``limit`` classes, the count and those in the data."""
    k = len(ev.classes)
    if k <= limit:
        return f"{k}: {', '.join(ev.classes)}"
    present = [ev.classes[c] for c in np.unique(ev.y_true)]
    shown = ", ".join(present[:limit]) + (f" and {len(present) - limit} more" if len(present) > limit else "")
    return f"{k:,d}; {len(present)} of them in the data: {shown}"


def _overview(report: Report, classifier: Any, evals: dict, focus: str) -> list[str]:
    params = sum(p.numel() for p in classifier.module.parameters())
    s = report.section(
        "Overview",
        "What was tested and how often the model is right. The no-information rate is what a model that always "
        "answers the most common class would score: a useful model must beat it clearly.",
    )
    size = classifier.preprocessing.input_size
    s.table(
        [
            ["model", classifier.name],
            ["parameters", f"{params:,d}"],
            ["input size", f"{size[0]} × {size[1]} pixels"],
            ["classes", _class_list(evals[focus])],
        ],
        columns=["", ""],
    )
    rows = [accuracy_row(name, ev) for name, ev in evals.items()]
    s.table(rows, caption="Accuracy per data set")  # top-3 accuracy only where it can be below 100%
    shown = ["top-3 accuracy"] if "top-3 accuracy" in rows[0] else []
    s.words(table_words("accuracy", "no-information rate", *shown, "F1", "AUC"))
    said: list[str | None] = [
        notes.accuracy_note(n, ev.accuracy, ev.no_information_rate, len(ev.y_true)) for n, ev in evals.items()
    ]
    if len(evals) > 1:
        ev = evals[focus]
        said.append(notes.shift_note({n: e.accuracy for n, e in evals.items()}, ev.confused_pairs(1)))
    said.append(notes.confidence_note(_mean_confidence(evals[focus], True), _mean_confidence(evals[focus], False)))
    said += [notes.skipped_note(n, ev.skipped) for n, ev in evals.items()]
    s.notes(said)
    return [n for n in said if n]


def _per_class(report: Report, evals: dict, focus: str) -> list[str]:
    from ..viz import confusion_matrix_figure, metrics_figure, roc_figure

    s = report.section(
        "Results per class",
        "Rows of a confusion matrix are the true classes, columns the model's answers: the diagonal holds the "
        "right answers. Recall = share of a class that the model finds; precision = share of its answers for a "
        "class that are right. A ROC curve close to the top-left corner means the scores separate that class well.",
    )
    for name, ev in evals.items():
        s.figure(confusion_matrix_figure(ev), f"Confusion matrix on the {name}")
    ev = evals[focus]
    rows = []
    shown = [ev.classes[c] for c in ev.classes_to_show(TABLE_CLASSES)]
    for c in shown:
        row: dict[str, Any] = {"class": c}
        for name, other in evals.items():
            row[f"recall ({name})"] = notes.pct(other.report[c]["recall"])
        row[f"precision ({focus})"] = notes.pct(ev.report[c]["precision"])
        row[f"F1 ({focus})"] = round(ev.report[c]["f1"], 3)
        row[f"AUC ({focus})"] = round(ev.roc_auc[c], 3)
        row[f"images ({focus})"] = ev.report[c]["support"]
        rows.append(row)
    left_out = len(ev.classes) - len(shown)
    more = (
        f" ({len(shown)} of {len(ev.classes):,d} classes: those in the data with the most mistakes; every class is "
        "in metrics.json)"
        if left_out
        else ""
    )
    s.table(rows, caption=f"Per-class metrics{more}")
    s.words(table_words("recall", "precision", "F1", "AUC"))
    s.figure(metrics_figure(ev), f"Precision, recall and F1 per class on the {focus}")
    s.figure(roc_figure(ev), f"ROC curves on the {focus}")
    said: list[str | None] = list(notes.class_notes(ev.report))
    if len(evals) > 1:
        best = max(evals, key=lambda n: evals[n].accuracy)
        if best != focus:
            recall = {n: {c: e.report[c]["recall"] for c in e.classes} for n, e in evals.items()}
            said.append(notes.recall_shift_note(recall[best], recall[focus], focus))
    s.notes(said)
    return [n for n in said if n]


@dataclass(frozen=True)
class StoryOptions:
    """How `add_model_story` tells the story: its options, with the gradient and CAM methods and the perturbation
    methods chosen (name -> options) and the source of the numbers."""

    gradient: dict[str, dict[str, Any]]
    perturbation: dict[str, dict[str, Any]]
    scorecard: bool
    metrics: Any
    concepts: bool
    max_groups: int
    per_group: int
    batch_size: int | None
    seed: int
    seeds: int
    progress: bool
    source: Source


@dataclass(frozen=True)
class Told:
    """What the story's sections found: the evaluation of each data set, the one examined (``focus``), its error
    groups, every note so far, the "inside the model" notes, the explanations and the scorecard's findings."""

    evals: dict[str, Any]
    focus: str
    groups: list[ErrorGroup]
    notes: list[str]
    inside: list[str]
    explained: Explained
    trust: Trust


@honours_progress
def add_model_story(
    report: Report,
    model: Any,
    data: Any,
    *,
    methods: Methods = None,
    perturbation_methods: Methods = None,
    scorecard: bool = True,
    metrics: Any = None,
    concepts: bool = True,
    max_groups: int = 3,
    per_group: int = 4,
    batch_size: int | None = None,
    seed: int = 0,
    seeds: int = 2,
    progress: bool = True,
    source: Source | None = None,
) -> dict[str, Any]:
    """Append the evaluation-to-explanation sections to ``report``; returns the numbers as a JSON-able dict.
    ``metrics``: the scorecard's (``None``: its defaults); ``seeds``: how many seeds the scorecard runs with (its
    claims hold over the images and these seeds); ``source``: where the evaluation, maps and scores come from
    (default: computed now; `cnnlens.open_store(...).report` reads them from a store)."""
    if int(max_groups) < 1 or int(per_group) < 1:
        raise CnnlensError(f"max_groups and per_group must be at least 1; got {max_groups} and {per_group}.")
    classifier = as_classifier(model)
    datasets = _datasets(data, classifier)
    size = tuple(classifier.preprocessing.input_size)
    options = StoryOptions(
        gradient=resolve_methods(methods, GRADIENT_METHODS, size),
        perturbation=resolve_methods(perturbation_methods, PERTURBATION_METHODS, size),
        scorecard=scorecard, metrics=metrics, concepts=concepts, max_groups=max_groups, per_group=int(per_group),
        batch_size=batch_size, seed=seed, seeds=seeds, progress=progress, source=source or Computed(),
    )  # fmt: skip
    stages = progress_bar(total=6, desc="report", unit="part")
    try:
        told = _tell(report, classifier, datasets, options, stages)
    finally:
        stages.close()
    return _conclude(report, classifier, told)


def _tell(report: Report, classifier: Any, datasets: dict[str, Any], options: StoryOptions, stages: Any) -> Told:
    """The story's sections from the evaluation to the scorecard, each stage counted on ``stages``."""
    source = options.source
    stages.set_postfix_str("evaluating")
    evals = {n: source.evaluate(classifier, d, name=n, batch_size=options.batch_size or 64, progress=options.progress)
             for n, d in datasets.items()}  # fmt: skip
    focus = min(evals, key=lambda n: evals[n].accuracy)
    ev, dataset = evals[focus], datasets[focus]
    stages.update()
    stages.set_postfix_str("overview")
    said = _overview(report, classifier, evals, focus)
    said += _per_class(report, evals, focus)
    stages.update()
    groups = error_groups(ev, options.max_groups)
    said += failures_section(report, classifier, dataset, ev, groups, per_group=options.per_group, focus=focus)
    stages.update()
    stages.set_postfix_str("inside")
    inside = inside_section(report, classifier, dataset, ev, groups[0] if groups else None)
    said += inside
    if groups and options.concepts:
        stages.set_postfix_str("concepts")
        said += concepts_section(report, classifier, dataset, ev, groups[0], seed=options.seed)[-1:]
    stages.update()
    stages.set_postfix_str("explaining")
    explained = explain_rows(
        report, classifier, dataset, ev, groups, gradient=options.gradient, perturbation=options.perturbation,
        batch_size=options.batch_size, seed=options.seed, progress=options.progress, source=source,
    )  # fmt: skip
    said += explained.notes
    stages.update()
    stages.set_postfix_str("scorecard")
    trust = Trust(notes=[], scorecard=None, leads={})
    if options.scorecard:
        trust = scorecard_section(
            report, explained, gradient=options.gradient, perturbation=options.perturbation,
            batch_size=options.batch_size, seed=options.seed, progress=options.progress, metrics=options.metrics,
            source=source, seeds=options.seeds,
        )  # fmt: skip
        said += trust.notes
    stages.update()
    return Told(evals=evals, focus=focus, groups=groups, notes=said, inside=inside, explained=explained, trust=trust)


def _conclude(report: Report, classifier: Any, told: Told) -> dict[str, Any]:
    """The "What this means" section; returns the story's numbers as a JSON-able dict."""
    ev = told.evals[told.focus]
    accuracies = {n: e.accuracy for n, e in told.evals.items()}
    images = told.explained.images
    summary = conclusions(
        accuracies, told.focus, ev, where=told.explained.where, inside=told.inside[-1] if told.inside else None,
        leads=told.trust.leads, explained_images=0 if images is None else int(images.inputs.shape[0]),
    )  # fmt: skip
    advice = notes.advice_notes(accuracies, _confidences(ev, True), _confidences(ev, False))
    section = report.section("What this means", "The main findings in plain words, computed from the numbers above.")
    section.notes(summary)
    if advice:
        section.text("What to do:").notes(advice)
    return {
        "model": classifier.name,
        "focus": told.focus,
        "data": {n: e.to_dict() for n, e in told.evals.items()},
        "groups": [g.to_dict() for g in told.groups],
        "explanations": told.explained.summary,
        "scorecard": told.trust.scorecard,
        "notes": told.notes + summary + advice,
    }


def _story_options() -> tuple[str, ...]:
    """The keyword options of `add_model_story`, which `model_report` passes on."""
    params = inspect.signature(add_model_story).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def model_report(
    model: Any, data: Any, out: str | os.PathLike[str] | OutputFolder, *, title: str | None = None, **options: Any
) -> Path:
    """Evaluate ``model`` on ``data`` and explain its mistakes; writes ``out/report.html`` and ``out/metrics.json``.

    ``model``: a Classifier or a `load_model` name/path. ``data``: a dataset, a spec for `open_dataset`
    (``digits:field``, a class-folder tree, a CSV), or a mapping name -> either to compare data sets (the one
    with the lowest accuracy is examined). ``options`` (those of `add_model_story`): ``methods`` /
    ``perturbation_methods``: names or name -> options (default: the seed's saliency, integrated gradients,
    DeepLIFT, Grad-CAM, guided Grad-CAM / occlusion, feature ablation, Shapley sampling, KernelSHAP, sized by
    `sized_options`); ``scorecard=True`` (run with ``seeds=2`` seeds); ``concepts=True`` (concepts
    of the most confused pair of classes); ``max_groups=3`` error groups of
    ``per_group=4`` images; ``batch_size=None``; ``seed=0``; ``progress=True``. ``out`` is held as one run
    (atomic files, a manifest ``cnnlens-run.json``, an earlier run's files replaced; other files, symlinks and
    concurrent runs refused, see `cnnlens.evaluation.save_evaluation`). Returns the HTML file's path.
    """
    for name in options:
        if name not in _story_options():
            raise unknown_name("model_report option", name, ("title", *_story_options()))
    classifier = as_classifier(model)
    report = Report(title or f"{classifier.name}: how well it works, where it fails, and why")
    with output_folder(out, "model_report", model=classifier.name, data=_data_names(data)) as folder:
        summary = add_model_story(report, classifier, data, **options)
        write_json(folder.file("metrics.json"), summary, default=_json_default)
        return report.write(folder.file("report.html"))


def _data_names(data: Any) -> Any:
    """What the run manifest records about ``data``: specs as given, names of datasets."""
    if isinstance(data, Mapping):
        return {str(k): _data_names(v) for k, v in data.items()}
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    return str(getattr(data, "name", type(data).__name__))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
