"""Reading a store back: `open_store(path)` -> `Store` (tables as pyarrow, maps as NumPy, by image id)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError, say, unknown_name
from ..core.files import OutputFolder
from ._kinds import ADDED, Added, added_rows, kinds
from ._layout import EXPLANATIONS, IMAGES, MAPS, PART, explanations_schema, images_schema, read_manifest
from ._parts import MixedMaps, Parts, concat, unstored_view
from ._settings import FORMAT

_SHARED = ("_opened", "_parts")


def open_store(path: str | os.PathLike[str]) -> Store:
    """The store a `cnnlens.run` wrote to ``path`` (finished or not: only finished shards are read)."""
    return Store(path)


class Store:
    """A store written by `cnnlens.run`: its manifest, its two tables and its maps.

    ``images``: one row per image of the finished shards (pyarrow Table sorted by dataset ``position``; columns
    ``position, id, shard, label, ok, error, predicted, top_classes, top_probabilities, p_label``).
    ``explanations``: one row per (image, method, class explained) (``position, id, method, explains, target,
    seconds, passes, delta, attribution_sum, map_scale, warnings, notes`` and one column per quality metric;
    ``seconds`` and ``passes`` are the method's per image, ``warnings`` the method's, ``notes`` the metrics' on why
    a score is missing). ``map(id, method)``: the stored map of one image as float32 NumPy ``(C, h, w)``.
    Raises ``CnnlensError`` when ``path`` holds no store, or one of another format.
    """

    _unstored: dict[tuple[str, str], tuple[dict[int, np.ndarray], dict[str, Any]]] = {}
    """(label, kind) -> (position -> map, the maps' attributes) of explanations not yet stored (`with_unstored`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self._opened: dict[str, Any] = {}  # the model and data set, once opened and checked
        self._parts = Parts()
        self.refresh()

    def copy(self) -> Store:
        """Another reader of the same store, as this one is now: it can be refreshed on its own (reading only what
        changed), and shares this one's opened model and data set."""
        other = object.__new__(Store)
        other.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_") or k in _SHARED})
        return other

    def with_unstored(self, results: Iterable[Any]) -> Store:
        """This store with explanations computed but not yet written shown as if they were stored (the app shows its
        on-demand results so while it writes them behind). Each result has the ``label``, ``method``, ``options``
        and ``computed`` parts of an addition (`explain`): its rows join ``explanations``, a new label joins
        ``added``, its maps are read from memory. Rows this store holds already are left out; with none left, the
        store itself is returned."""
        return unstored_view(self, results)

    def write_added(self, label: str, method: str, options: dict[str, Any], computed: list[dict[str, Any]]) -> None:
        """Write an addition computed before (the second half of `explain`, which the app runs in its writer
        thread): under the store's lock, the maps, then the rows that commit them."""
        from ._added import write_more

        write_more(self, label, method, options, computed)

    def refresh(self) -> Store:
        """Read the store again from disk: shards a run finished and explanations added since (returns itself)."""
        manifest = read_manifest(self.root) if self.root.is_dir() else None
        if manifest is None:
            raise CnnlensError(f"{self.root} is not a cnnlens store (no manifest.json); make one with cnnlens run")
        if manifest.get("format") != FORMAT:
            raise CnnlensError(
                f"{self.root} is a store of format {manifest.get('format')!r}; this cnnlens reads {FORMAT!r}: open it "
                f"with the cnnlens version that wrote it ({manifest.get('cnnlens')}), or run again into a new store"
            )
        for name in ("_positions", "_rows", "_explained", "_stored_labels"):
            self.__dict__.pop(name, None)
        self.manifest: dict[str, Any] = manifest
        """What the run computes: model, data set, methods and metrics with their options, seeds, version; and
        ``added``, the methods explained on demand since (`explain`)."""
        import pyarrow.compute as pc

        images = self._parts.read(self.root / IMAGES, PART, images_schema())
        self.images = concat(images, images_schema()).sort_by("position")
        """One row per image of the finished shards (an ``images`` part is a shard's commit mark)."""
        schema = explanations_schema(self.metrics)
        run = concat(self._parts.read(self.root / EXPLANATIONS, PART, schema), schema)
        explanations = added_rows(run, self._parts.read(self.root / EXPLANATIONS, ADDED, schema))
        done = pc.is_in(explanations.column("position"), value_set=self.images.column("position"))
        self.explanations = explanations.filter(done)  # parts of unfinished shards are not read
        """One row per (image, method, class explained) of the finished shards, those added on demand included."""
        return self

    # ---- what the store holds ----------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        """Method labels, in the run's order."""
        return list(self.manifest["methods"])

    @property
    def added(self) -> dict[str, dict[str, Any]]:
        """Methods explained on demand after the run (`explain`), label -> ``{"method": name, "options": {...}}``;
        they explain the images they were asked for, not every image. (A label is listed once rows of it are
        stored: an addition killed before its rows were written leaves no trace.)"""
        stored = self._stored_labels
        return {k: v for k, v in (self.manifest.get("added") or {}).items() if k in stored}

    @functools.cached_property
    def _stored_labels(self) -> set[str]:
        import pyarrow.compute as pc

        return set(pc.unique(self.explanations.column("method")).to_pylist())

    @property
    def labels(self) -> list[str]:
        """Every method label with explanations in the store: the run's `methods`, then the `added` ones."""
        return self.methods + [a for a in self.added if a not in self.manifest["methods"]]

    def method_of(self, label: str) -> tuple[str, dict[str, Any]]:
        """(registry name, options) of the method stored under ``label``."""
        spec = self.manifest["methods"].get(label) or (self.manifest.get("added") or {}).get(label)
        if spec is None:
            raise unknown_name("method in this store", label, self.labels)
        return spec["method"], dict(spec["options"])

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest["metrics"])

    @property
    def size(self) -> int:
        """Images in the data set."""
        return int(self.manifest["dataset"]["size"])

    @property
    def done(self) -> int:
        """Images of the finished shards (failed ones included)."""
        return self.images.num_rows

    @property
    def complete(self) -> bool:
        return self.done == self.size

    @property
    def ids(self) -> list[str]:
        """Ids of the stored images, in data set order."""
        return self.images.column("id").to_pylist()

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of every stored image that failed."""
        rows = self.images.filter(_not(self.images.column("ok")))
        return list(zip(rows.column("id").to_pylist(), rows.column("error").to_pylist(), strict=True))

    @property
    def classes(self) -> list[str]:
        model, data = self.manifest["model"], self.manifest["dataset"]
        names = model.get("classes") or data.get("classes")
        if names is None:
            k = max((len(v) for v in self.images.column("top_classes").to_pylist() if v), default=0)
            names = [str(i) for i in range(k)]
        return list(names)

    def __repr__(self) -> str:
        return (
            f"Store({str(self.root)!r}, images={self.done}/{self.size}, failed={len(self.failed)}, "
            f"methods={self.methods}, metrics={self.metrics})"
        )

    # ---- rows -----------------------------------------------------------------------------------------------
    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return dict(zip(self.ids, self.images.column("position").to_pylist(), strict=True))

    @functools.cached_property
    def _rows(self) -> dict[str, int]:
        return {image_id: i for i, image_id in enumerate(self.ids)}

    @functools.cached_property
    def _explained(self) -> dict[tuple[int, str, str], int]:
        t = self.explanations
        keys = zip(*(t.column(c).to_pylist() for c in ("position", "method", "explains")), strict=True)
        return {k: i for i, k in enumerate(keys)}

    def row(self, image_id: str) -> dict[str, Any]:
        """The ``images`` row of one image, as a dict."""
        self._position_of(image_id)
        return self.images.slice(self._rows[image_id], 1).to_pylist()[0]

    def _position_of(self, image_id: str) -> tuple[int, str]:
        if image_id not in self._positions:
            raise CnnlensError(
                f"no image {image_id!r} in the store {self.root} ({self.done} of {self.size} images stored; ids "
                f"look like {self.ids[0] if self.ids else 'nothing yet'!r})"
            )
        return self._positions[image_id], image_id

    def explanation(self, image_id: str, method: str, explains: str | int = "predicted") -> dict[str, Any]:
        """The ``explanations`` row of ``method`` for one image; ``explains="label"`` gives the true class's
        explanation (that of the predicted class when the two agree), an int that of this class index (stored as
        ``"predicted"`` or ``"label"`` when it is one of them, else as ``"class-K"``; see `explain`)."""
        if method not in self.labels:
            raise unknown_name("method in this store", method, self.labels)
        position, _ = self._position_of(image_id)
        row = self.row(image_id)
        for kind in kinds(row, explains, len(self.classes)):
            i = self._explained.get((position, method, kind))
            if i is not None:
                return self.explanations.slice(i, 1).to_pylist()[0]
        why = f"it failed: {row['error']}" if not row["ok"] else f"the run explained {self.manifest['explain']!r}"
        what = f"class {explains}" if isinstance(explains, int) else f"the {explains} class"
        raise CnnlensError(
            f"no {method} explanation of {what} for {image_id!r}: {why}; add one with "
            f"{say('Store.explain', 'the app (cnnlens view)')}"
        )

    # ---- maps -----------------------------------------------------------------------------------------------
    def _array(self, method: str, explains: str) -> Any:
        import zarr

        unstored = self._unstored.get((method, explains))
        try:
            array = zarr.open_group(self.root / MAPS, mode="r")[f"{method}/{explains}"]
        except (KeyError, FileNotFoundError):
            if unstored is None:
                raise
            array = None
        return array if unstored is None else MixedMaps(array, *unstored)

    def map(self, image_id: str, method: str, explains: str | int = "predicted", size: str | None = None) -> np.ndarray:
        """The map of one image as float32 ``(C, h, w)``: ``C`` is 1 for map methods, the input's channels (or a
        layer's units, for attributions to a layer) otherwise; ``h, w`` the input size, or the layer's for
        single-layer CAMs and layer attributions, or the input size divided by ``downsample`` (see `resolution`).
        ``size="input"``: upsampled bilinearly to the input size (for a CAM exactly what the method returns).
        Values are the method's, to float16 precision (three significant digits of the map's largest value)."""
        row = self.explanation(image_id, method, explains)
        array = self._array(method, row["explains"])
        stored = np.asarray(array[row["position"]], dtype=np.float32) * np.float32(row["map_scale"])
        if size is None:
            return stored
        if size != "input":
            raise CnnlensError(f"size must be None (as stored) or 'input'; got {size!r}")
        target = tuple(array.attrs["input_size"])
        if stored.shape[-2:] == target:
            return stored
        import torch
        import torch.nn.functional as F

        up = F.interpolate(torch.from_numpy(stored)[None], size=target, mode="bilinear", align_corners=False)
        return up[0].numpy()

    def maps(
        self, method: str, ids: list[str] | None = None, explains: str | int = "predicted", size: str | None = None
    ) -> np.ndarray:
        """``map`` of several images (default: every image the method explained), stacked ``(n, C, h, w)``."""
        if ids is None:
            ids = [i for i in self.ids if self.has(i, method, explains)]
        if not ids:
            raise CnnlensError(f"no stored {method} maps to read")
        return np.stack([self.map(i, method, explains, size) for i in ids])

    def has(self, image_id: str, method: str, explains: str | int = "predicted") -> bool:
        """Whether the store holds ``method``'s explanation of ``image_id`` for that class."""
        try:
            self.explanation(image_id, method, explains)
        except CnnlensError:
            return False
        return True

    def resolution(self, method: str, explains: str = "predicted") -> dict[str, Any]:
        """How ``method``'s maps are kept: ``{"resolution": ..., "input_size": [H, W], ...}`` with resolution
        ``"input"``, ``"downsampled"`` (``"factor"``), ``"layer"`` (a single-layer CAM at its ``"layer"``'s
        resolution, which the method upsamples) or ``"layer_attribution"`` (attributions to a layer's units).
        ``explains``: the stored kind, ``"predicted"``, ``"label"`` or ``"class-K"`` (any one of them: a method
        keeps its maps the same way for every class)."""
        unstored = sorted((k for k in self._unstored if k[0] == method), key=lambda k: k[1] != explains)
        if unstored:
            return dict(self._unstored[unstored[0]][1])
        import zarr

        group = zarr.open_group(self.root / MAPS, mode="r")
        maps = group.get(method)
        if not isinstance(maps, zarr.Group):  # absent (or, in a damaged store, an array)
            raise unknown_name("method in this store", method, self.labels)
        keys = sorted(maps.array_keys(), key=lambda k: k != explains)
        return dict(maps[keys[0]].attrs)

    # ---- numbers --------------------------------------------------------------------------------------------
    def probabilities(self) -> tuple[list[str], np.ndarray]:
        """(ids, ``(n, K)`` class probabilities) of the images that did not fail; needs every class kept."""
        ok = self.images.filter(self.images.column("ok"))
        k = len(self.classes)
        if self.manifest["top_k"] < k:
            raise CnnlensError(
                f"the store keeps the top {self.manifest['top_k']} of {k} class probabilities; this needs them all: "
                f"run again into a new store with {say(f'top_k={k}', f'--top-k {k}')}"
            )
        probs = np.zeros((ok.num_rows, k))
        classes = ok.column("top_classes").to_pylist()
        values = ok.column("top_probabilities").to_pylist()
        for i, (c, v) in enumerate(zip(classes, values, strict=True)):
            probs[i, c] = v
        return ok.column("id").to_pylist(), probs

    def evaluation(self) -> Any:
        """The `cnnlens.Evaluation` of the stored predictions (failed images listed in ``skipped``)."""
        from ..evaluation import Evaluation

        ids, probs = self.probabilities()
        ok = self.images.filter(self.images.column("ok"))
        labels = ok.column("label").to_pylist()
        if any(v is None for v in labels):
            raise CnnlensError("the stored images have no labels; an evaluation needs the true class of each")
        skipped = [tuple(s) for s in self.manifest["dataset"].get("skipped", [])] + self.failed
        positions = np.asarray(ok.column("position").to_pylist())
        return Evaluation(np.asarray(labels), probs, self.classes, ids, skipped, positions)

    def scores(self, method: str, metric: str, explains: str = "predicted") -> tuple[list[str], np.ndarray]:
        """(ids, values) of one quality metric for one method's explanations (NaN where it does not apply)."""
        if metric not in self.metrics:
            raise unknown_name("metric in this store", metric, self.metrics)
        import pyarrow.compute as pc

        t = self.explanations
        rows = t.filter(pc.and_(pc.equal(t["method"], method), pc.equal(t["explains"], explains)))
        values = np.array([np.nan if v is None else v for v in rows.column(metric).to_pylist()], dtype=float)
        return rows.column("id").to_pylist(), values

    # ---- the model and the images ----------------------------------------------------------------------------
    def has_opened(self, what: str) -> bool:
        """Whether `model` (``what="model"``) or `dataset` (``"data"``) has opened and checked it already."""
        return what in self._opened

    def model(self, model: Any = None) -> Any:
        """The store's model as a `Classifier`: reopened from the manifest (a bundled name or a model file, with
        the stored classes and preprocessing), or ``model`` checked; its weights must hash to the stored SHA-256.
        Opened and checked once: later calls without ``model`` return the same object."""
        from ._report import open_model

        if model is None and "model" in self._opened:
            return self._opened["model"]
        self._opened["model"] = open_model(self, model)
        return self._opened["model"]

    def dataset(self, data: Any = None) -> Any:
        """The store's data set (``dataset[position] -> (image, label)``): reopened from the manifest's spec, or
        ``data`` (e.g. after the images moved) checked to list the same ids, labels and classes in order. Opened
        and checked once: later calls without ``data`` return the same object."""
        from ._report import open_data

        if data is None and "data" in self._opened:
            return self._opened["data"]
        self._opened["data"] = open_data(self, data)[1]
        return self._opened["data"]

    def explain(
        self, ids: str | list[str], method: str, explains: str | int = "predicted", *, label: str | None = None,
        score: bool = True, model: Any = None, data: Any = None, batch_size: int | None = None,
        progress: bool = True, **options: Any,
    ) -> Added:  # fmt: skip
        """Explain more: ``method`` (any registered one, with ``options``) for the images ``ids`` and one class
        each (``explains``: ``"predicted"``, ``"label"`` or a class index), computed with the store's model and
        data (`model`, `dataset`; or ``model`` / ``data`` as there) and written to the store with a run's
        guarantees (under its lock, maps then the rows that commit them, each file atomically); the store is then
        read again. Explanations already stored are kept, not computed again. Stored under ``label`` (default:
        the label of the same method with the same options, else the method's name, else ``NAME-2``, ...), listed
        in `added` unless it is one of the run's `methods`. ``score``: score with the store's metrics too. Seeds:
        an image is explained with its shard's seed, as a run would. Returns an `Added` (label, images explained,
        images that could not be, with the reason). Raises ``CnnlensError`` for unknown ids, options, classes, or
        while a run writes the store."""
        from ._added import explain_more

        return explain_more(
            self, ids, method, explains, label=label, score=score, model=model, data=data, batch_size=batch_size,
            progress=progress, options=options,
        )  # fmt: skip

    # ---- the report ---------------------------------------------------------------------------------------
    def report(
        self, out: str | os.PathLike[str] | OutputFolder, *, model: Any = None, data: Any = None, **options: Any
    ) -> Path:
        """The HTML report (`cnnlens.report.model_report`) of the store's model and data set, built from the stored
        predictions, maps and quality scores without recomputing them; writes ``out/report.html`` and
        ``out/metrics.json``, returns the HTML file's path. ``model`` / ``data``: needed when the run was given
        Python objects (the manifest then cannot reopen them); they must be the store's (weights and ids are
        checked). ``options``: the report's own (``title``, ``max_groups``, ``per_group``, ``scorecard``,
        ``progress``); methods and metrics are the store's. Needs a finished store that keeps every class
        probability."""
        from ._report import store_report

        return store_report(self, out, model=model, data=data, **options)


def _not(column: Any) -> Any:
    import pyarrow.compute as pc

    return pc.invert(column)
