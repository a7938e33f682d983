"""Where the report's numbers come from. `Computed` (the default) evaluates the data, runs the methods and the
scorecard now; a store (`cnnlens.store`) gives the same numbers read from disk, so that a report of a finished
dataset run recomputes nothing. The report asks a `Source` for exactly these four things."""

from __future__ import annotations

from typing import Any, Protocol

from ._records import ExplainedImages, Maps, MethodRun


class Source(Protocol):
    """What the report asks for its numbers; ``computes``: whether they are computed now (the report then warms
    the model up and runs the scorecard with several seeds) or read (a store: no warm-up, one seed)."""

    @property
    def computes(self) -> bool: ...

    def evaluate(self, classifier: Any, dataset: Any, *, name: str, batch_size: int, progress: bool) -> Any:
        """The `Evaluation` of ``classifier`` on the data set called ``name``."""
        ...

    def has(self, evaluation: Any, row: int, target: int) -> bool:
        """Whether evaluation row ``row`` can be explained for class ``target``."""
        ...

    def explain(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, batch_size: int | None, seed: int,
        progress: bool, desc: str,
    ) -> tuple[Maps, dict[str, MethodRun]]:  # fmt: skip
        """The maps and the run of each of ``methods`` for ``images``."""
        ...

    def scorecard(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, metrics: Any, batch_size: int | None,
        seed: int, progress: bool,
    ) -> Any:  # fmt: skip
        """The `Scorecard` of ``methods`` on ``images``."""
        ...


class Computed:
    """The report's evaluation, maps and scorecard, computed now."""

    computes = True

    def evaluate(self, classifier: Any, dataset: Any, *, name: str, batch_size: int, progress: bool) -> Any:
        """The `Evaluation` of ``classifier`` on the data set called ``name``."""
        from ..evaluation import evaluate

        return evaluate(classifier, dataset, batch_size=batch_size, progress=progress)

    def has(self, evaluation: Any, row: int, target: int) -> bool:
        """Whether evaluation row ``row`` can be explained for class ``target`` (always, when computing)."""
        return True

    def explain(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, batch_size: int | None, seed: int,
        progress: bool, desc: str,
    ) -> tuple[Maps, dict[str, MethodRun]]:  # fmt: skip
        """(maps, runs) of each method for ``images``, as `run_methods` returns them."""
        from ._methods import run_methods

        return run_methods(
            images.classifier, images.inputs, images.targets, methods, batch_size=batch_size, seed=seed,
            progress=progress, desc=desc,
        )  # fmt: skip

    def scorecard(
        self, images: ExplainedImages, methods: dict[str, dict[str, Any]], *, metrics: Any, batch_size: int | None,
        seed: int, progress: bool,
    ) -> Any:  # fmt: skip
        """The `Scorecard` of ``methods`` on ``images``."""
        from .. import quality

        return quality.scorecard(
            images.classifier, images.inputs, methods, target=images.targets, metrics=metrics, batch_size=batch_size,
            seed=seed, progress=progress,
        )  # fmt: skip
