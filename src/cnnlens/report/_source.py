"""Where the report's numbers come from. `Computed` (the default) evaluates the data, runs the methods and the
scorecard now; a store (`cnnlens.store`) gives the same numbers read from disk, so that a report of a finished
dataset run recomputes nothing. The report asks a source for exactly these four things."""

from __future__ import annotations

from typing import Any

import torch


class Computed:
    """The report's evaluation, maps and scorecard, computed now."""

    def evaluate(self, classifier: Any, name: str, dataset: Any, batch_size: int, progress: bool) -> Any:
        """The `Evaluation` of ``classifier`` on the data set called ``name``."""
        from ..evaluation import evaluate

        return evaluate(classifier, dataset, batch_size=batch_size, progress=progress)

    def has(self, ev: Any, row: int, target: int) -> bool:
        """Whether evaluation row ``row`` can be explained for class ``target`` (always, when computing)."""
        return True

    def explain(
        self, classifier: Any, x: torch.Tensor, ev: Any, rows: list[int], targets: list[int],
        methods: dict[str, dict[str, Any]], batch_size: int | None, seed: int, progress: bool, desc: str,
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
        """(maps, info) of each method for the inputs ``x`` (evaluation ``rows``) and ``targets``, as
        `run_methods` returns them."""
        from ._methods import run_methods

        return run_methods(classifier, x, targets, methods, batch_size, seed, progress, desc)

    def scorecard(
        self, classifier: Any, x: torch.Tensor, ev: Any, rows: list[int], targets: list[int],
        methods: dict[str, dict[str, Any]], metrics: Any, batch_size: int | None, seed: int, progress: bool,
    ) -> Any:  # fmt: skip
        """The `Scorecard` of ``methods`` on the explained inputs."""
        from .. import quality

        return quality.scorecard(
            classifier, x, methods, target=targets, metrics=metrics, batch_size=batch_size, seed=seed,
            progress=progress,
        )  # fmt: skip
