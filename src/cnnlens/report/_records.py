"""The report's records of explained images and method runs (shared by its sources and its sections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
