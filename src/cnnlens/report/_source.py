"""Where the report's numbers come from. `Computed` (the default) evaluates the data, runs the methods and the
scorecard now; a store (`cnnlens.store`) gives the same numbers read from disk, so that a report of a finished
dataset run recomputes nothing. The report asks a `Source` for exactly these four things."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class ExplainedImages:
    """The images a report explains: the model, their ``inputs`` (preprocessed), their rows in the ``evaluation``
    and the class index each is explained for (``targets``)."""

    classifier: Any
    inputs: torch.Tensor
    evaluation: Any
    rows: list[int]
    targets: list[int]


@dataclass(frozen=True)
class MethodRun:
    """One method run on the explained images: its ``options``, what it cost (``seconds`` and model ``passes`` for
    all images), its mean relative completeness error (``relative_delta``; ``None`` for methods without one), the
    warnings it gave, or the ``error`` that stopped it. ``same_as``: the method it is the same computation as
    (its maps are shown under that one's name); ``same_as_shown``: the joined name its group is shown under."""

    options: dict[str, Any]
    seconds: float = 0.0
    passes: float = 0.0
    relative_delta: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    same_as: str | None = None
    same_as_shown: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the report's ``metrics.json`` lists it (only the fields that apply)."""
        if self.error is not None:
            out: dict[str, Any] = {"error": self.error, "options": self.options}
        else:
            out = {
                "seconds": self.seconds, "passes": self.passes, "options": self.options,
                "relative_delta": self.relative_delta, "warnings": self.warnings,
            }  # fmt: skip
        if self.same_as is not None:
            out["same_as"] = self.same_as
        if self.same_as_shown is not None:
            out["same_as_shown"] = self.same_as_shown
        return out


Maps = dict[str, np.ndarray]
"""Method -> its maps of the explained images, as the method returns them."""


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
