"""What each page shows, read from a store: plain values for the templates (no HTML here; templates escape)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.errors import CnnlensError

MATRIX_CLASSES = 30
"""Most classes the confusion matrix shows; with more, those of the most confused pairs (all pairs are listed)."""
PAIRS = 15
PER_PAGE = 48
PAIR_IMAGES = 8


def number(query: Mapping[str, str], name: str, low: float, high: float, default: float) -> float:
    text = query.get(name, "")
    if text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise CnnlensError(f"{name} must be a number in [{low:g}, {high:g}]; got {text!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise CnnlensError(f"{name} must be a number in [{low:g}, {high:g}]; got {text!r}")
    return value


def whole(query: Mapping[str, str], name: str, low: int, high: int, default: int | None) -> int | None:
    text = query.get(name, "")
    if text == "":
        return default
    if not text.strip().lstrip("-").isdigit() or not low <= int(text) <= high:
        raise CnnlensError(f"{name} must be a whole number in {low}..{high}; got {text!r}")
    return int(text)


def _rows(store: Any) -> list[dict[str, Any]]:
    """The stored images as dicts, with ``confidence`` (the predicted class's probability) and ``correct``."""
    t = store.images
    cols = {c: t.column(c).to_pylist() for c in ("id", "position", "label", "ok", "predicted", "top_probabilities")}
    rows = []
    for i in range(t.num_rows):
        probs = cols["top_probabilities"][i]
        ok, label, predicted = cols["ok"][i], cols["label"][i], cols["predicted"][i]
        rows.append(
            {
                "id": cols["id"][i], "position": cols["position"][i], "label": label, "ok": ok,
                "predicted": predicted, "confidence": probs[0] if ok and probs else None,
                "correct": None if not ok or label is None else label == predicted,
            }
        )  # fmt: skip
    return rows


def overview(store: Any) -> dict[str, Any]:
    """Accuracy against the no-information rate, per-class metrics, the confusion matrix and the most confused
    pairs of the labelled images the model predicted."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = store.classes
    k = len(classes)
    rows = [r for r in _rows(store) if r["correct"] is not None]
    out: dict[str, Any] = {"classes": classes, "labelled": len(rows), "done": store.done, "size": store.size}
    out["failed"] = len(store.failed)
    out["unlabelled"] = sum(1 for r in _rows(store) if r["ok"] and r["label"] is None)
    if not rows:
        return out
    y_true = np.array([r["label"] for r in rows])
    y_pred = np.array([r["predicted"] for r in rows])
    counts = np.bincount(y_true, minlength=k)
    out["accuracy"] = float(np.mean(y_true == y_pred))
    out["correct"] = int(np.sum(y_true == y_pred))
    out["nir"] = float(counts.max() / len(rows))
    out["majority"] = int(counts.argmax())
    top = store.images.filter(store.images.column("ok")).to_pydict()
    depth = min(5, store.manifest["top_k"], k)
    if depth > 1:
        hits = [
            lab in (tc or [])[:depth]
            for lab, tc in zip(top["label"], top["top_classes"], strict=True)
            if lab is not None
        ]
        out["top_k"] = (depth, float(np.mean(hits)))
    cm = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), zero_division=0
    )
    present = [c for c in range(k) if cm[c].sum() or cm[:, c].sum()]
    out["per_class"] = [
        {"index": c, "name": classes[c], "precision": float(precision[c]), "recall": float(recall[c]),
         "f1": float(f1[c]), "support": int(support[c]), "predicted": int(cm[:, c].sum())}
        for c in present
    ]  # fmt: skip
    errors = cm.copy()
    np.fill_diagonal(errors, 0)
    order = np.dstack(np.unravel_index(np.argsort(-errors, axis=None, kind="stable"), errors.shape))[0]
    shown = present if len(present) <= MATRIX_CLASSES else _most_confused(order, errors, present)
    peak = max(1, int(cm[np.ix_(shown, shown)].max()))
    out["matrix"] = {
        "classes": [{"index": c, "name": classes[c]} for c in shown],
        "rows": [
            {"index": t, "name": classes[t], "total": int(cm[t].sum()),
             "cells": [{"pred": p, "count": int(cm[t, p]), "shade": round(float(cm[t, p]) / peak, 3)} for p in shown]}
            for t in shown
        ],
        "present": len(present),
        "total": k,
    }  # fmt: skip
    out["pairs"] = [
        {"true": int(t), "pred": int(p), "true_name": classes[t], "pred_name": classes[p], "count": int(errors[t, p]),
         "share": float(errors[t, p] / max(1, cm[t].sum()))}
        for t, p in order[:PAIRS] if errors[t, p] > 0
    ]  # fmt: skip
    return out


def _most_confused(order: Any, errors: Any, present: list[int]) -> list[int]:
    """`MATRIX_CLASSES` classes for the matrix: those of the most confused pairs (``order``: the pairs, most errors
    first), up to the first pair that no longer fits; any places left go to the classes in the most errors."""
    chosen: list[int] = []
    for t, p in order:
        if errors[t, p] == 0:
            break
        new = [int(c) for c in dict.fromkeys((t, p)) if c not in chosen]
        if len(chosen) + len(new) > MATRIX_CLASSES:
            break
        chosen += new
    involved = errors.sum(0) + errors.sum(1)
    rest = sorted((c for c in present if c not in chosen), key=lambda c: (-involved[c], c))
    return sorted(chosen + rest[: MATRIX_CLASSES - len(chosen)])


def sort_keys(store: Any) -> list[dict[str, str]]:
    """The grid's sort orders: confidence, and each stored method's quality scores."""
    from ..quality import get_metric

    keys = [{"key": "confidence", "text": "confidence, highest first"},
            {"key": "-confidence", "text": "confidence, lowest first"}]  # fmt: skip
    for label in store.labels:
        for metric in store.metrics:
            better = get_metric(metric).higher_is_better
            way = "best first" if better is not None else "highest first"
            keys.append({"key": f"{label}:{metric}", "text": f"{label} {metric}, {way}"})
    return keys


def grid(store: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """Thumbnails filtered by true and predicted class, correct or not, confidence range; sorted; one page."""
    from ..quality import get_metric

    k = len(store.classes)
    true = whole(query, "true", 0, k - 1, None)
    pred = whole(query, "pred", 0, k - 1, None)
    correct = query.get("correct", "")
    if correct not in ("", "yes", "no"):
        raise CnnlensError(f"correct must be yes, no or empty; got {correct!r}")
    low = number(query, "min", 0.0, 1.0, 0.0)
    high = number(query, "max", 0.0, 1.0, 1.0)
    sort = query.get("sort", "confidence")
    keys = [s["key"] for s in sort_keys(store)]
    if sort not in keys:
        raise CnnlensError(f"sort must be one of {', '.join(keys)}; got {sort!r}")
    rows = [r for r in _rows(store) if r["ok"]]
    rows = [
        r for r in rows
        if (true is None or r["label"] == true) and (pred is None or r["predicted"] == pred)
        and (correct == "" or r["correct"] == (correct == "yes")) and low <= r["confidence"] <= high
    ]  # fmt: skip
    if sort in ("confidence", "-confidence"):
        rows.sort(key=lambda r: (r["confidence"] if sort == "-confidence" else -r["confidence"], r["position"]))
    else:
        label, metric = sort.rsplit(":", 1)
        ids, values = store.scores(label, metric)
        score = {i: v for i, v in zip(ids, values, strict=True) if math.isfinite(v)}
        sign = -1.0 if get_metric(metric).higher_is_better in (True, None) else 1.0
        for r in rows:
            r["score"] = score.get(r["id"])
        rows.sort(key=lambda r: (r["score"] is None, sign * (r["score"] or 0.0), r["position"]))
    pages = max(1, math.ceil(len(rows) / PER_PAGE))
    page = whole(query, "page", 1, pages, 1) or 1
    shown = rows[(page - 1) * PER_PAGE : page * PER_PAGE]
    filters = {"true": true, "pred": pred, "correct": correct, "min": low, "max": high, "sort": sort}
    return {"rows": shown, "count": len(rows), "page": page, "pages": pages, "filters": filters,
            "sorts": sort_keys(store), "classes": store.classes}  # fmt: skip


def image(store: Any, image_id: str, explains: str | int) -> dict[str, Any]:
    """One image: its row, top classes, and per stored method the explanation of the class asked for (if any)."""
    from ..store import target_class

    row = store.row(image_id)
    classes = store.classes
    top = []
    if row["ok"]:
        for c, p in zip(row["top_classes"], row["top_probabilities"], strict=True):
            top.append(
                {"index": c, "name": classes[c], "p": p, "true": c == row["label"], "pred": c == row["predicted"]}
            )
    target = target_class(row, explains, len(classes)) if row["ok"] else None
    maps = []
    for label in store.labels:
        method, options = store.method_of(label)
        entry = {"label": label, "method": method, "options": options, "stored": False}
        if row["ok"] and store.has(image_id, label, target):
            e = store.explanation(image_id, label, target)
            entry.update(stored=True, explains=e["explains"], seconds=e["seconds"], passes=e["passes"],
                         warnings=e["warnings"], notes=e["notes"], delta=e["delta"],
                         scores={m: e[m] for m in store.metrics})  # fmt: skip
        maps.append(entry)
    return {"row": row, "top": top, "target": target, "explains": explains, "maps": maps, "classes": classes,
            "metrics": store.metrics, "better": better(store.metrics)}  # fmt: skip


def better(metrics: Any) -> dict[str, str]:
    """Metric -> which way is better, as the page marks it (``↑ higher is better``; ``""`` for descriptive)."""
    from ..quality import get_metric

    marks = {True: "↑ higher is better", False: "↓ lower is better", None: ""}
    return {m: marks[get_metric(m).higher_is_better] for m in metrics}


def pair(store: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """A confused pair (true a, predicted b): its errors beside correct images of a and of b."""
    k = len(store.classes)
    a = whole(query, "true", 0, k - 1, None)
    b = whole(query, "pred", 0, k - 1, None)
    if a is None or b is None:
        raise CnnlensError("a pair needs true=CLASS and pred=CLASS (class indices)")
    rows = [r for r in _rows(store) if r["correct"] is not None]

    def pick(t: int, p: int) -> list[dict[str, Any]]:
        chosen = sorted((r for r in rows if r["label"] == t and r["predicted"] == p), key=lambda r: -r["confidence"])
        return chosen[:PAIR_IMAGES]

    errors = [r for r in rows if r["label"] == a and r["predicted"] == b]
    return {"a": a, "b": b, "classes": store.classes, "errors": pick(a, b), "error_count": len(errors),
            "correct_a": pick(a, a), "correct_b": pick(b, b)}  # fmt: skip


def method_choices() -> list[tuple[str, list[dict[str, Any]]]]:
    """Every registered method by category, with its options as the explain form shows them (text as ``--set``
    takes it)."""
    from ..attribution import BASELINE_NAMES, SMOOTH_OPTIONS, methods

    def shown(value: Any) -> str:
        return value if isinstance(value, str) else repr(value)

    by_category: dict[str, list[dict[str, Any]]] = {}
    for info in methods():
        options = {**info.options, **SMOOTH_OPTIONS}
        fields = [{"name": k, "default": shown(o.default), "rule": o.rule, "help": o.help} for k, o in options.items()]
        if info.needs_baseline:
            fields.insert(0, {"name": "baseline", "default": "", "rule": "one of " + ", ".join(BASELINE_NAMES),
                              "help": "the reference input (empty: the method's default)"})  # fmt: skip
        method = {
            "name": info.name,
            "category": info.category,
            "summary": info.summary,
            "options": fields,
            "scorable": bool(info.maps_pixels),
        }  # layer and neuron maps: the input-space scores do not apply
        by_category.setdefault(info.category, []).append(method)
    return list(by_category.items())


def parse_options(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Option texts from the form -> values, as ``--set`` parses them; checked by the registry."""
    from ..attribution import SMOOTH_OPTIONS, get_method
    from ..store import full_options

    declared = {**get_method(method).params, **SMOOTH_OPTIONS}
    values: dict[str, Any] = {}
    for key, text in given.items():
        if not isinstance(text, str):
            raise CnnlensError(f"option {key!r}: give its value as text")
        if key == "baseline":
            if text.strip():
                values["baseline"] = text.strip()
            continue
        if key not in declared:
            raise CnnlensError(f"{method} has no option {key!r}; its options are {', '.join(sorted(declared))}")
        values[key] = declared[key].parse(text)
    full_options(method, values)  # unknown or bad values raise here, before any work
    return values
