"""`score`: one metric's judgement of one method's explanations."""

from __future__ import annotations

from typing import Any

from ..core.errors import CnnlensError
from ._base import MethodSpec, Metric, Score
from ._registry import get_metric


def score(
    metric: str | Metric | type[Metric],
    model: Any,
    inputs: Any,
    method: MethodSpec,
    *,
    target: Any = None,
    batch_size: int | None = None,
    seed: int = 0,
    method_options: dict[str, Any] | None = None,
    progress: bool = True,
    **options: Any,
) -> Score:
    """Score ``method``'s explanations of ``inputs`` with one registered metric.

    ``target``: ``None`` (predicted class), an int or one int per image. ``progress``: progress bars on stderr
    for long runs. ``options``: the metric's own (see
    ``cnnlens.quality.metrics()``); ``method_options``: passed to the method when the metric runs it.
    """
    if isinstance(metric, Metric):
        if options:
            raise CnnlensError("give options when constructing the metric object, not to score()")
        instance = metric
    elif isinstance(metric, str):
        instance = get_metric(metric)(**options)
    elif isinstance(metric, type) and issubclass(metric, Metric):
        instance = metric(**options)
    else:
        raise CnnlensError(
            f"metric must be a metric name (see cnnlens.quality.metrics()), a Metric class or a Metric; "
            f"got {type(metric).__name__}"
        )
    return instance(
        model,
        inputs,
        method,
        target=target,
        batch_size=batch_size,
        seed=seed,
        method_options=method_options,
        progress=progress,
    )
