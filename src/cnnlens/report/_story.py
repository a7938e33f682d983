"""`model_report`: seed 000's story for a labelled data set, from evaluation to explanations, as one HTML file."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError, unknown_name
from ..core.files import OutputFolder, output_folder, write_json
from ..core.progress import honours_progress, progress_bar
from . import _notes as notes
from ._concepts import concepts_section
from ._conclusions import conclusions
from ._explain import explain_rows, scorecard_section
from ._figures import rows_figure
from ._html import Report
from ._inside import inside_section
from ._method_choice import GRADIENT_METHODS, PERTURBATION_METHODS, Methods, resolve_methods
from ._source import Computed
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


def _pixels(classifier: Any, images: list[Any]) -> np.ndarray:
    return classifier.preprocessing.to_pixels(classifier.preprocess(images))


def _by_confidence(ev: Any, rows: np.ndarray) -> list[int]:
    rows = np.asarray(rows, dtype=np.int64)
    conf = ev.probabilities[rows, ev.y_pred[rows]]
    return [int(r) for r in rows[np.argsort(-conf, kind="stable")]]


def error_groups(ev: Any, max_groups: int) -> list[dict[str, Any]]:
    """The most confused (true, predicted) pairs of an Evaluation, each with its errors and the true positives
    of both classes, most confident first."""
    pairs = [(n, t, p, ev.groups.confused(t, p)) for t, p, n in ev.confused_pairs(int(max_groups))]
    return [
        {
            "true": t,
            "predicted": p,
            "count": n,
            "errors": _by_confidence(ev, rows),
            "tp_true": _by_confidence(ev, ev.groups.true_positives[t]),
            "tp_predicted": _by_confidence(ev, ev.groups.true_positives[p]),
            "confidence": float(ev.probabilities[rows, ev.y_pred[rows]].mean()),
        }
        for n, t, p, rows in pairs
    ]


def _mean_confidence(ev: Any, wrong: bool) -> float:
    mask = (ev.y_true != ev.y_pred) if wrong else (ev.y_true == ev.y_pred)
    rows = np.flatnonzero(mask)
    return float(ev.probabilities[rows, ev.y_pred[rows]].mean()) if len(rows) else float("nan")


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
    rows = []
    for name, ev in evals.items():
        rows.append(
            {
                "data": name,
                "images": len(ev.y_true),
                "skipped": len(ev.skipped),
                "accuracy": notes.pct(ev.accuracy),
                "no-information rate": notes.pct(ev.no_information_rate),
                "top-3 accuracy": notes.pct(ev.top_k_accuracy(min(3, len(ev.classes)))),
                "macro F1": round(ev.averages["macro"]["f1"], 3),
                "macro AUC": round(ev.roc_auc["macro"], 3),
            }
        )
    s.table(rows, caption="Accuracy per data set")
    s.words(table_words("accuracy", "no-information rate", "top-3 accuracy", "F1", "AUC"))
    said = [notes.accuracy_note(n, ev.accuracy, ev.no_information_rate, len(ev.y_true)) for n, ev in evals.items()]
    if len(evals) > 1:
        ev = evals[focus]
        said.append(notes.shift_note({n: e.accuracy for n, e in evals.items()}, ev.confused_pairs(1)))
    said.append(notes.confidence_note(_mean_confidence(evals[focus], True), _mean_confidence(evals[focus], False)))
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
    said = notes.class_notes(ev.report)
    if len(evals) > 1:
        best = max(evals, key=lambda n: evals[n].accuracy)
        if best != focus:
            recall = {n: {c: e.report[c]["recall"] for c in e.classes} for n, e in evals.items()}
            said.append(notes.recall_shift_note(recall[best], recall[focus], focus))
    s.notes(said)
    return [n for n in said if n]


def _failures(
    report: Report, classifier: Any, dataset: Any, ev: Any, groups: list, per_group: int, focus: str
) -> list[str]:
    if not groups:
        report.section(
            "Where it fails", f"The model makes no mistakes on the {len(ev.y_true)} images of the {focus}."
        ).text("There is no mistake to show; the explanations below show what its right answers rest on.")
        return []
    s = report.section(
        "Where it fails",
        f"The most frequent mistakes on the {focus}. Each group shows the misread images next to images of the "
        "true class and of the predicted class that the model gets right, to compare what it sees. Above each "
        "image: the model's answer and how sure it was.",
    )
    errors = len(ev.groups.most_confident_errors)
    pairs = [(g["true"], g["predicted"], g["count"]) for g in groups]
    said = [notes.confusion_note(pairs, errors)]
    for g in groups:
        t, p = g["true"], g["predicted"]
        picks = [
            (f"{t} read as {p}", g["errors"][:per_group]),
            (f"correct {t}", g["tp_true"][:per_group]),
            (f"correct {p}", g["tp_predicted"][:per_group]),
        ]
        rows = []
        for label, chosen in picks:
            images = [dataset[int(ev.positions[r])][0] for r in chosen]
            pixels = list(_pixels(classifier, images)) if images else []
            titles = [f"{ev.classes[ev.y_pred[r]]} {ev.probabilities[r, ev.y_pred[r]]:.0%}" for r in chosen]
            rows.append((label, pixels, titles))
        s.figure(rows_figure(rows), f"{t} read as {p} ({g['count']}): errors, then correct {t} and correct {p}")
        s.table(_error_rows(ev, g["errors"][:per_group]), caption=f"The {t} read as {p} shown above")
        said.append(notes.group_note(t, p, g["count"], g["confidence"]))
    s.notes(said)
    return [n for n in said if n]


def _error_rows(ev: Any, rows: list[int]) -> list[dict[str, Any]]:
    """One row per misread image, in plain words: its answer, how sure, the true class's probability, the
    second choice."""
    table = []
    for r in rows:
        t, p = int(ev.y_true[r]), int(ev.y_pred[r])
        second = int(np.argsort(-ev.probabilities[r], kind="stable")[1]) if len(ev.classes) > 1 else p
        table.append(
            {
                "image": ev.ids[r],
                "true class": ev.classes[t],
                "read as": ev.classes[p],
                "how sure": notes.pct(ev.probabilities[r, p]),
                "probability of the true class": notes.pct(ev.probabilities[r, t]),
                "second choice": f"{ev.classes[second]} ({notes.pct(ev.probabilities[r, second])})",
            }
        )
    return table


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
    source: Computed | None = None,
) -> dict[str, Any]:
    """Append the evaluation-to-explanation sections to ``report``; returns the numbers as a JSON-able dict.
    ``metrics``: the scorecard's (``None``: its defaults); ``seeds``: how many seeds the scorecard runs with (its
    claims hold over the images and these seeds); ``source``: where the evaluation, maps and scores come from
    (default: computed now; `cnnlens.open_store(...).report` reads them from a store)."""
    source = source or Computed()
    if int(max_groups) < 1 or int(per_group) < 1:
        raise CnnlensError(f"max_groups and per_group must be at least 1; got {max_groups} and {per_group}.")
    classifier = as_classifier(model)
    datasets = _datasets(data, classifier)
    size = tuple(classifier.preprocessing.input_size)
    gradient = resolve_methods(methods, GRADIENT_METHODS, size)
    perturbation = resolve_methods(perturbation_methods, PERTURBATION_METHODS, size)
    stages = progress_bar(total=6, desc="report", unit="part")
    try:
        stages.set_postfix_str("evaluating")
        evals = {n: source.evaluate(classifier, n, d, batch_size or 64, progress) for n, d in datasets.items()}
        focus = min(evals, key=lambda n: evals[n].accuracy)
        ev, dataset = evals[focus], datasets[focus]
        stages.update()
        stages.set_postfix_str("overview")
        said = _overview(report, classifier, evals, focus)
        said += _per_class(report, evals, focus)
        stages.update()
        groups = error_groups(ev, max_groups)
        said += _failures(report, classifier, dataset, ev, groups, int(per_group), focus)
        stages.update()
        stages.set_postfix_str("inside")
        inside = inside_section(report, classifier, dataset, ev, groups[0] if groups else None)
        said += inside
        if groups and concepts:
            stages.set_postfix_str("concepts")
            said += concepts_section(report, classifier, dataset, ev, groups[0], seed)[-1:]
        stages.update()
        stages.set_postfix_str("explaining")
        explained = explain_rows(
            report, classifier, dataset, ev, groups, gradient, perturbation, batch_size, seed, progress, source
        )
        said += explained["notes"]
        stages.update()
        stages.set_postfix_str("scorecard")
        card, leads = None, {}
        if scorecard:
            card_notes, card, leads = scorecard_section(
                report,
                classifier,
                explained,
                gradient,
                perturbation,
                batch_size,
                seed,
                progress,
                metrics,
                source,
                seeds,
            )
            said += card_notes
        stages.update()
    finally:
        stages.close()
    accuracies = {n: e.accuracy for n, e in evals.items()}
    explained_images = 0 if explained.get("x") is None else int(explained["x"].shape[0])
    summary = conclusions(
        accuracies, focus, ev, explained.get("where"), inside[-1] if inside else None, leads, explained_images
    )
    advice = notes.advice_notes(accuracies, _mean_confidence(ev, True))
    section = report.section("What this means", "The main findings in plain words, computed from the numbers above.")
    section.notes(summary)
    if advice:
        section.text("What to do:").notes(advice)
    said += summary + advice
    return {
        "model": classifier.name,
        "focus": focus,
        "data": {n: e.to_dict() for n, e in evals.items()},
        "groups": [{k: g[k] for k in ("true", "predicted", "count", "confidence")} for g in groups],
        "explanations": explained["summary"],
        "scorecard": card,
        "notes": said,
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
