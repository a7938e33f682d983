"""`model_report`: seed 000's story for a labelled data set, from evaluation to explanations, as one HTML file."""

from __future__ import annotations

import inspect
import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import CnnlensError, unknown_name
from .._progress import honours_progress, progress_bar
from . import _notes as notes
from ._concepts import concepts_section
from ._explain import explain_rows, scorecard_section
from ._figures import rows_figure
from ._html import Report
from ._inside import inside_section
from ._options import GRADIENT_METHODS, PERTURBATION_METHODS, Methods, resolve_methods


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
    pairs = []
    for t, p in itertools.permutations(ev.classes, 2):
        rows = ev.groups.confused(t, p)
        if len(rows):
            pairs.append((len(rows), ev.classes.index(t), ev.classes.index(p), t, p, rows))
    pairs.sort(key=lambda g: (-g[0], g[1], g[2]))
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
        for n, _, _, t, p, rows in pairs[: int(max_groups)]
    ]


def _mean_confidence(ev: Any, wrong: bool) -> float:
    mask = (ev.y_true != ev.y_pred) if wrong else (ev.y_true == ev.y_pred)
    rows = np.flatnonzero(mask)
    return float(ev.probabilities[rows, ev.y_pred[rows]].mean()) if len(rows) else float("nan")


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
            ["classes", f"{len(evals[focus].classes)}: {', '.join(evals[focus].classes)}"],
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
    said = [notes.accuracy_note(n, ev.accuracy, ev.no_information_rate, len(ev.y_true)) for n, ev in evals.items()]
    if len(evals) > 1:
        ev = evals[focus]
        said.append(
            notes.shift_note(
                {n: e.accuracy for n, e in evals.items()}, notes.most_confused(ev.confusion_matrix, ev.classes, 1)
            )
        )
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
    for c in ev.classes:
        row: dict[str, Any] = {"class": c}
        for name, other in evals.items():
            row[f"recall ({name})"] = notes.pct(other.report[c]["recall"])
        row[f"precision ({focus})"] = notes.pct(ev.report[c]["precision"])
        row[f"F1 ({focus})"] = round(ev.report[c]["f1"], 3)
        row[f"AUC ({focus})"] = round(ev.roc_auc[c], 3)
        row[f"images ({focus})"] = ev.report[c]["support"]
        rows.append(row)
    s.table(rows, caption="Per-class metrics")
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
    s = report.section(
        "Where it fails",
        f"The most frequent mistakes on the {focus}. Each group shows the misread images next to images of the "
        "true class and of the predicted class that the model gets right, to compare what it sees.",
    )
    if not groups:
        s.text("The model makes no mistakes on this data.")
        return []
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
        table = [r for r in ev.probability_table(3) if r["index"] in set(g["errors"][:per_group])]
        table.sort(key=lambda r: -r["p_predicted"])
        s.table(
            table,
            columns=["id", "true", "predicted", "p_predicted", "p_true", "top2", "p_top2"],
            caption=f"The {t} read as {p} shown above",
        )
        said.append(notes.group_note(t, p, g["count"], g["confidence"]))
    s.notes(said)
    return [n for n in said if n]


@honours_progress
def add_model_story(
    report: Report,
    model: Any,
    data: Any,
    *,
    methods: Methods = None,
    perturbation_methods: Methods = None,
    scorecard: bool = True,
    concepts: bool = True,
    max_groups: int = 3,
    per_group: int = 4,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Append the evaluation-to-explanation sections to ``report``; returns the numbers as a JSON-able dict."""
    from ..evaluate import evaluate

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
        evals = {
            n: evaluate(classifier, d, batch_size=batch_size or 64, progress=progress) for n, d in datasets.items()
        }
        focus = min(evals, key=lambda n: evals[n].accuracy)
        ev, dataset = evals[focus], datasets[focus]
        stages.update()
        stages.set_postfix_str("overview")
        said = _overview(report, classifier, evals, focus)
        said += _per_class(report, evals, focus)
        stages.update()
        groups = error_groups(ev, max_groups)
        said += _failures(report, classifier, dataset, ev, groups, int(per_group), focus)[:1]
        stages.update()
        stages.set_postfix_str("inside")
        if groups:
            said += inside_section(report, classifier, dataset, ev, groups[0])[-1:]
            if concepts:
                stages.set_postfix_str("concepts")
                said += concepts_section(report, classifier, dataset, ev, groups[0], seed)[-1:]
        stages.update()
        stages.set_postfix_str("explaining")
        explained = explain_rows(
            report, classifier, dataset, ev, groups, gradient, perturbation, batch_size, seed, progress
        )
        said += explained["notes"]
        stages.update()
        stages.set_postfix_str("scorecard")
        card = None
        if scorecard:
            card_notes, card = scorecard_section(
                report, classifier, explained, gradient, perturbation, batch_size, seed, progress
            )
            said += card_notes[:3]
        stages.update()
    finally:
        stages.close()
    advice = notes.advice_notes({n: e.accuracy for n, e in evals.items()}, _mean_confidence(ev, True))
    conclusions = report.section(
        "What this means", "The main findings in plain words, computed from the numbers above."
    )
    conclusions.notes(said)
    if advice:
        conclusions.text("What to do:").notes(advice)
    said += advice
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
    model: Any, data: Any, out: str | os.PathLike[str], *, title: str | None = None, **options: Any
) -> Path:
    """Evaluate ``model`` on ``data`` and explain its mistakes; writes ``out/report.html`` and ``out/metrics.json``.

    ``model``: a Classifier or a `load_model` name/path. ``data``: a dataset, a spec for `open_dataset`
    (``digits:field``, a class-folder tree, a CSV), or a mapping name -> either to compare data sets (the one
    with the lowest accuracy is examined). ``options`` (those of `add_model_story`): ``methods`` /
    ``perturbation_methods``: names or name -> options (default: the seed's saliency, integrated gradients,
    DeepLIFT, Grad-CAM, guided Grad-CAM / occlusion, feature ablation, Shapley sampling, KernelSHAP, sized by
    `sized_options`); ``scorecard=True``; ``concepts=True`` (concepts of the most confused pair of classes);
    ``max_groups=3`` error groups of ``per_group=4`` images;
    ``batch_size=None``; ``seed=0``; ``progress=True``. Returns the HTML file's path.
    """
    for name in options:
        if name not in _story_options():
            raise unknown_name("model_report option", name, ("title", *_story_options()))
    classifier = as_classifier(model)
    report = Report(title or f"{classifier.name}: how well it works, where it fails, and why")
    summary = add_model_story(report, classifier, data, **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    return report.write(out / "report.html")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
