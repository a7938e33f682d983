"""The report of a store: the existing report (`cnnlens.report.model_report`) fed with the store's evaluation, maps
and quality scores instead of computing them. Only the feature maps of the "inside the model" section are computed
(one forward pass of two images)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import CnnlensError, CnnlensWarning, say
from ..report import Computed, ExplainedImages, MethodRun
from ._settings import data_fingerprint, dataset_ids, model_fingerprint
from ._sources import importable

if TYPE_CHECKING:
    from ..core.files import OutputFolder
    from ._reader import Store


class Stored(Computed):
    """The report's numbers read from a store."""

    computes = False

    def __init__(self, store: Store) -> None:
        self.store = store

    def evaluate(self, classifier: Any, dataset: Any, *, name: str, batch_size: int, progress: bool) -> Any:
        return self.store.evaluation()

    def _kind(self, ev: Any, row: int, target: int) -> str | None:
        """Which stored explanation of evaluation row ``row`` explains class ``target`` (None: none does)."""
        if target == int(ev.y_pred[row]):
            kind = "predicted"
        elif target == int(ev.y_true[row]):
            kind = "label"
        else:
            return None
        image = ev.ids[row]
        return kind if all(self.store.has(image, m, kind) for m in self.store.methods) else None

    def has(self, evaluation: Any, row: int, target: int) -> bool:
        return self._kind(evaluation, row, target) is not None

    def _rows(self, images: ExplainedImages, method: str) -> list[dict[str, Any]]:
        ev = images.evaluation
        pairs = zip(images.rows, images.targets, strict=True)
        return [self.store.explanation(ev.ids[r], method, self._kind(ev, r, t) or "") for r, t in pairs]

    def explain(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, batch_size: int | None, seed: int,
        progress: bool, desc: str,
    ) -> tuple[dict[str, Any], dict[str, MethodRun]]:  # fmt: skip
        maps, info = {}, {}
        for method in methods:
            stored = self._rows(images, method)
            # as the method returns them: CAMs (and downsampled maps) at the input size, layer attributions as they are
            size = None if self.store.resolution(method)["resolution"] == "layer_attribution" else "input"
            maps[method] = np.stack([self.store.map(r["id"], method, r["explains"], size) for r in stored])
            info[method] = self._run(method, stored)
        return maps, info

    def _run(self, method: str, stored: list[dict[str, Any]]) -> MethodRun:
        """The `MethodRun` of ``method`` over the ``stored`` explanations: their cost summed, their mean relative
        completeness error (when every one has a delta), their warnings."""
        deltas = [r["delta"] for r in stored]
        relative = None
        if all(d is not None for d in deltas):
            gaps = [abs(r["attribution_sum"] - r["delta"]) for r in stored]
            relative = float(np.mean([abs(d) / max(g, 1e-12) for d, g in zip(deltas, gaps, strict=True)]))
        return MethodRun(
            options=self.store.manifest["methods"][method]["options"],
            seconds=round(sum(r["seconds"] for r in stored), 3),
            passes=int(round(sum(r["passes"] for r in stored))),
            relative_delta=relative,
            warnings=sorted({w for r in stored for w in r["warnings"]}),
        )

    def scorecard(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, metrics: Any, batch_size: int | None,
        seed: int, progress: bool,
    ) -> Any:  # fmt: skip
        from ..quality import COST, Scorecard, get_metric

        columns = [*self.store.metrics, *COST]
        per_image: dict[tuple[str, str], list[float]] = {}
        notes: set[str] = set()
        for method in methods:
            stored = self._rows(images, method)
            for metric in self.store.metrics:
                per_image[(method, metric)] = [math.nan if r[metric] is None else r[metric] for r in stored]
            per_image[(method, "passes_per_image")] = [r["passes"] for r in stored]
            per_image[(method, "seconds_per_image")] = [r["seconds"] for r in stored]
            per_image[(method, "setup_seconds")] = [math.nan] * len(stored)  # the run did not measure it apart
            notes |= {"{0} of {2}:{1}".format(*n.split(":", 1), method) for r in stored for n in r["notes"]}
        means = [{"method": m, **{c: float(np.mean(per_image[(m, c)])) for c in columns}} for m in methods]
        direction = {n: get_metric(n).higher_is_better for n in self.store.metrics} | dict(COST)
        return Scorecard(
            methods=list(methods), columns=columns, rows=means, per_image=per_image, higher_is_better=direction,
            scores={}, notes=sorted(notes), options=dict(self.store.manifest["metrics"]),
        )  # fmt: skip


def open_model(store: Store, model: Any) -> Any:
    """The store's model: ``model`` if given, else reloaded from the manifest; its weights must be the store's."""
    from ..models import Preprocessing, load_model

    spec = store.manifest["model"]
    if model is None:
        if not spec.get("source"):
            raise CnnlensError(
                f"the store's model {spec['name']!r} was given as a Python object; pass it"
                f"{say(': report(out, model=...)', ' with --model')}"
            )
        with importable(spec):
            model = load_model(spec["source"], spec=spec.get("arch"), class_names=spec.get("classes"))
        if spec.get("preprocessing") is not None:
            model.preprocessing = Preprocessing(**spec["preprocessing"])
    from ..report import as_classifier

    classifier = as_classifier(model)
    if model_fingerprint(classifier.module) != spec["fingerprint"]:
        raise CnnlensError(
            f"this model's weights differ from those the store {store.root} was made with (model "
            f"{spec['name']!r}); give the same model"
        )
    return classifier


def open_data(store: Store, data: Any) -> tuple[str, Any]:
    """(name, data set) of the store; the data set must list the same images, labels and classes in order."""
    from ..data import open_dataset

    spec = store.manifest["dataset"]
    if data is None:
        if not spec.get("spec"):
            raise CnnlensError(
                f"the store's data set {spec['name']!r} was given as a Python object; pass it"
                f"{say(': report(out, data=...)', ' with --data')}"
            )
        data = spec["spec"]
    name = os.fspath(data) if isinstance(data, (str, os.PathLike)) else str(getattr(data, "name", spec["name"]))
    if isinstance(data, (str, os.PathLike)):
        classes = store.manifest["model"].get("classes") or spec.get("classes")
        class_map = spec.get("class_map")
        data = open_dataset(os.fspath(data), classes=classes, on_error="report", class_map=class_map)
    labels = getattr(data, "labels", None)
    found = data_fingerprint(
        dataset_ids(data), None if labels is None else list(labels), getattr(data, "classes", None)
    )
    if found != spec["fingerprint"]:
        raise CnnlensError(
            f"this data set ({len(data)} images) is not the one the store {store.root} was made with "
            f"({spec['size']} images of {spec['name']!r}): ids, labels or classes differ"
        )
    return spec.get("spec") or name, data


STORE_CHOSEN = ("methods", "perturbation_methods", "metrics", "source", "batch_size", "seed")
"""`model_report` options a store fixes (its methods, metrics and seeds), which a report of it cannot change."""


def store_report(
    store: Store, out: str | os.PathLike[str] | OutputFolder, *, model: Any = None, data: Any = None, **options: Any
) -> Path:
    """`cnnlens.report.model_report` of the store's model and data set with the store's maps and scores."""
    import warnings

    from ..attribution import get_method
    from ..report import model_report

    if not store.complete:
        raise CnnlensError(
            f"the store {store.root} holds {store.done} of {store.size} images; finish the run first (run the same "
            f"command again, it resumes)"
        )
    fixed = sorted(set(options) & set(STORE_CHOSEN))
    if fixed:
        raise CnnlensError(
            f"a report of a store shows the store's methods, metrics and seeds; {', '.join(fixed)} cannot be chosen "
            f"(make another store with cnnlens run to change them)"
        )
    classifier = open_model(store, model)
    name, dataset = open_data(store, data)
    gradient: dict[str, dict[str, Any]] = {}
    perturbation: dict[str, dict[str, Any]] = {}
    left_out = []
    for label, spec in store.manifest["methods"].items():
        if label != spec["method"]:
            left_out.append(label)
            continue
        family = perturbation if get_method(label).category == "perturbation" else gradient
        family[label] = spec["options"]
    if left_out:
        warnings.warn(
            f"the report names methods by their registry names; left out: {', '.join(left_out)}",
            CnnlensWarning,
            stacklevel=2,
        )
    return model_report(
        classifier, {name: dataset}, out, methods=gradient, perturbation_methods=perturbation,
        metrics=store.manifest["metrics"], source=Stored(store), **options,
    )  # fmt: skip
