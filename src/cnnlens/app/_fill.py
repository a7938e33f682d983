"""`cnnlens view --data`: a new store of the data set's predictions, filled in the background while the app is
already served; explanations are then added as pages ask for them."""

from __future__ import annotations

import os
import threading
from typing import Any

from ..core.errors import CnnlensError
from ._jobs import Computation, Jobs
from ._state import DEFAULT_MAX_PASSES


def start_predictions(
    classifier: Any, dataset: Any, out: str | os.PathLike[str], *, sources: Any = None, batch_size: int | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Jobs:  # fmt: skip
    """Start predicting ``dataset`` into the store ``out`` (created, or resumed: a store of other settings is
    refused) as the app's first computation, and return the `Jobs` that runs it once the store exists (its
    manifest written or checked). Raises the run's ``CnnlensError`` if it fails before that."""
    from ..store import Sources, run_loaded

    jobs = Jobs(max_passes)
    ready = threading.Event()

    def work(job: Computation) -> Any:
        summary = run_loaded(
            classifier, dataset, [], sources=sources or Sources(), out=out, metrics=None, explain="predicted",
            top_k=None, downsample=None, shard_size=32, batch_size=batch_size, seed=0, backend="local",
            address=None, workers=None, progress=False, opened=ready.set,
        )  # fmt: skip
        job.link = "/"
        return summary

    job = jobs.start(
        f"predicting {len(dataset):,} images", work, total=len(dataset), limit=False,
        cancelled="cancelled; the images predicted so far are kept (start again to resume)",
    )  # fmt: skip
    while not ready.wait(0.02):
        if not job.running:
            raise CnnlensError(job.message or f"the store {out} could not be created")
    return jobs
