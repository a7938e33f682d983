"""`cnnlens.run`: explain a whole data set into a store, shard by shard, resumable after a kill."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ..core.errors import CnnlensError
from ..core.progress import progress as progress_switch
from ..core.progress import progress_bar
from ._compute import ShardResult, compute_shard
from ._layout import StoreWriter
from ._settings import (
    EXPLAIN,
    MAX_ALL_CLASSES,
    RunPlan,
    build_manifest,
    dataset_ids,
    describe_source,
    resolve_methods,
    resolve_metrics,
)
from ._sources import record

if TYPE_CHECKING:
    from ..models import Classifier

BACKENDS = ("local", "ray")


@dataclass
class RunSummary:
    """What one call of `run` did."""

    store: Path
    images: int
    """Images in the data set."""
    already: int
    """Images that were in the store before this run (a resumed run skips them)."""
    computed: int
    """Images computed by this run (failed ones included)."""
    failed: int
    """Images in the store that failed (unreadable, or a method could not explain them), with reasons in the table."""
    seconds: float
    passes: float
    """Model inputs evaluated by this run: predictions, explanations and quality metrics (a partial pass of
    incremental inference counts as its fraction of the multiply-adds; printed rounded)."""
    backend: str

    def __str__(self) -> str:
        rate = self.computed / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.images} images in {self.store}: {self.computed} computed now ({rate:.1f} images/s, "
            f"{self.seconds:.1f} s, {self.passes:,.0f} model passes, backend {self.backend}), {self.already} already "
            f"there; {self.failed} failed"
        )


def _classifier(model: Any) -> Any:
    from torch import nn

    from ..models import Classifier, bundled_models, load_model

    if isinstance(model, Classifier):
        source = model.name if model.name in bundled_models() else None
        return model, source
    if isinstance(model, nn.Module):
        return Classifier(model), None  # the data set must then yield preprocessed (C, H, W) tensors
    if isinstance(model, (str, os.PathLike)):
        return load_model(model), describe_source(model)
    raise CnnlensError(
        f"model must be a cnnlens Classifier, an nn.Module, a bundled model name or a model file; got "
        f"{type(model).__name__}"
    )


def _dataset(dataset: Any, classifier: Any) -> Any:
    from ..data import open_dataset

    if isinstance(dataset, (str, os.PathLike)):
        dataset = open_dataset(os.fspath(dataset), classes=classifier.class_names, on_error="report")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise CnnlensError(
            f"dataset must support len() and dataset[i] -> (image, label) (e.g. ImageFolder, CsvImages, "
            f"digits('field')) or be a spec such as 'digits:field'; got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise CnnlensError("the data set is empty; there is nothing to run")
    data_classes, model_classes = getattr(dataset, "classes", None), classifier.class_names
    if data_classes is not None and model_classes is not None and list(data_classes) != list(model_classes):
        raise CnnlensError(
            f"the data set's classes {list(data_classes)[:10]} differ from the model's {list(model_classes)[:10]}; "
            "label i must mean the model's output i: build the data set with classes=model.class_names"
        )
    return dataset


@overload
def _positive(name: str, value: Any, allow_none: Literal[False]) -> int: ...
@overload
def _positive(name: str, value: Any, allow_none: bool) -> int | None: ...
def _positive(name: str, value: Any, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        none = " or None" if allow_none else ""
        raise CnnlensError(f"{name} must be a positive int{none}; got {value!r}")
    return int(value)


def _top_k(top_k: Any, classes: int) -> int:
    k = _positive("top_k", top_k, allow_none=True)
    if k is None:
        return classes if classes <= MAX_ALL_CLASSES else 10
    return min(k, classes)


def run(
    model: Any,
    dataset: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    out: str | os.PathLike[str],
    metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    explain: str = "predicted",
    top_k: int | None = None,
    downsample: int | None = None,
    shard_size: int = 32,
    batch_size: int | None = None,
    seed: int = 0,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> RunSummary:
    """Explain every image of ``dataset`` with every method and write the results to the store ``out``.

    Per image the store keeps the prediction, the class probabilities (``top_k``: how many, ``None``: all up to
    100 classes, else 10), the label, each method's map (float16, divided by its largest absolute value; single-layer
    CAMs at their layer's resolution; ``downsample=f`` averages other maps over f x f blocks) and each quality
    metric's score. ``model``: a Classifier, a bundled name or a model file. ``dataset``: a data set object or a
    spec (``"digits:field"``, a class-folder tree, a CSV). ``methods`` / ``metrics``: names, or mappings
    name -> options (as in `cnnlens.quality.scorecard`); ``methods=[]``: predictions only (explanations can be
    added later, `Store.explain`); ``metrics=None``: no scores. ``explain``: the class
    explained, ``"predicted"``, ``"label"`` or ``"both"`` (the label's explanation added where it differs from the
    prediction). Images go in fixed shards of ``shard_size``, each explained and scored with its own seed derived
    from ``seed``, so the store does not depend on the order, process or machine that computes the shards.
    ``batch_size``: most model inputs per forward pass (``None``: automatic).

    Running again with the same settings resumes: finished shards are kept, the others computed, each image ends
    up exactly once; other settings on a store with results are refused (``CnnlensError``). ``backend="ray"`` runs
    the shards on Ray (`ray.data` actors holding the model; ``address``: an existing cluster, default a local
    instance; ``workers``: actors, default one per CPU). Returns a `RunSummary`; `open_store(out)` reads the store.
    """
    classifier, source = _classifier(model)
    return run_loaded(
        classifier, _dataset(dataset, classifier), methods, sources=Sources(source, describe_source(dataset)),
        out=out, metrics=metrics, explain=explain, top_k=top_k, downsample=downsample, shard_size=shard_size,
        batch_size=batch_size, seed=seed, backend=backend, address=address, workers=workers, progress=progress,
    )  # fmt: skip


@dataclass(frozen=True)
class Sources:
    """How the model and the data were given (bundled name or file, data spec), recorded to reopen them later."""

    model: str | None = None
    data: str | None = None
    arch: str | None = None
    class_map: Mapping[str, str | int] | None = None


def run_loaded(
    classifier: Classifier,
    data: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    sources: Sources,
    out: str | os.PathLike[str],
    metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] | None,
    explain: str,
    top_k: int | None,
    downsample: int | None,
    shard_size: int,
    batch_size: int | None,
    seed: int,
    backend: str,
    address: str | None,
    workers: int | None,
    progress: bool,
    opened: Callable[[], None] | None = None,
) -> RunSummary:
    """`run` on a loaded Classifier and an opened data set (``sources`` says where they came from); ``opened()``
    is called once the store is open (its manifest written or checked, its lock held) and work starts."""
    from .._version import __version__
    from ..attribution import check_run_options

    check_run_options(batch_size, seed)
    if explain not in EXPLAIN:
        raise CnnlensError(f"explain must be one of {', '.join(EXPLAIN)}; got {explain!r}")
    if backend not in BACKENDS:
        raise CnnlensError(f"backend must be 'local' or 'ray'; got {backend!r}")
    if address is not None and backend != "ray":
        raise CnnlensError("address is the Ray cluster to use; give it with backend='ray'")
    if metrics and not methods:
        raise CnnlensError("metrics score the methods' explanations; give methods too, or no metrics")
    job = RunPlan(
        classifier=classifier, dataset=data, methods=resolve_methods(methods), metrics=resolve_metrics(metrics),
        explain=explain, top_k=_top_k(top_k, classifier.num_classes),
        downsample=_positive("downsample", downsample, allow_none=True),
        shard_size=_positive("shard_size", shard_size, allow_none=False), seed=int(seed), batch_size=batch_size,
        ids=dataset_ids(data),
    )  # fmt: skip
    workers = _positive("workers", workers, allow_none=True)
    manifest = build_manifest(job, sources.model, sources.data, __version__)
    manifest["model"], manifest["dataset"] = record(manifest["model"], manifest["dataset"], sources)
    manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["run"] = {"backend": backend, "batch_size": batch_size}
    start = time.perf_counter()
    with progress_switch(progress), StoreWriter(out, manifest) as writer:
        if opened is not None:
            opened()
        done = writer.done()
        pending = [k for k in range(job.shards) if k not in done]
        already = sum(b - a for a, b in map(job.bounds, done))
        computed, passes = _execute(job, pending, writer, already, backend, address, workers)
    from ._reader import open_store

    failed = len(open_store(out).failed)
    return RunSummary(Path(out), job.size, already, computed, failed, time.perf_counter() - start, passes, backend)


def _execute(
    job: RunPlan, pending: list[int], writer: StoreWriter, already: int, backend: str, address: str | None,
    workers: int | None,
) -> tuple[int, int]:  # fmt: skip
    """Compute the pending shards on the backend, writing each as it arrives; returns (images, passes)."""
    results: Iterable[ShardResult]
    if backend == "ray":
        from ._ray import ray_results

        results = ray_results(job, pending, address, workers)
    else:
        results = (compute_shard(job, k) for k in pending)
    computed = passes = failed = 0
    bar = progress_bar(total=job.size, initial=already, desc="run", unit="img", smoothing=0.1)
    try:
        for result in results:
            writer.submit(result)
            computed += len(result.images)
            passes += result.passes
            failed += sum(not r["ok"] for r in result.images)
            bar.update(len(result.images))
            if failed:
                bar.set_postfix_str(f"{failed} failed")
    finally:
        bar.close()
    return computed, passes
