"""Judge explanations: faithfulness, stability, sanity, localisation, class discrimination, detail and cost.

``score(metric, model, inputs, method, target=None, **options)`` returns a ``Score`` with one value (and, for
curve metrics, one curve) per image. ``method`` is a registry name, a ``Method``, an ``Explanation`` or a
callable ``(model, inputs, target) -> attributions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError
from ._base import Explainer, MethodSpec, Metric, MetricRun, Score
from ._registry import MetricInfo, get_metric, metric_table, metrics, register_metric
from ._scorecard import COST as COST
from ._scorecard import DEFAULT_METRICS as DEFAULT_METRICS
from ._scorecard import Scorecard, scorecard
from ._scorecard import scorecard_metrics as scorecard_metrics
from ._specs import metric_choices as metric_choices

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from torch import nn

    from ..data import ImageInput
    from ..engine import Target
    from ..models import Classifier

# The metric families register their metrics on import; the registry itself imports none of them.
from . import _curves, _descriptive, _faithfulness, _localisation, _sanity  # noqa: E402, F401  isort: skip

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "Explainer",
    "MetricRun",
    "Metric",
    "MetricInfo",
    "Score",
    "Scorecard",
    "get_metric",
    "metric_table",
    "metrics",
    "register_metric",
    "score",
    "scorecard",
]


def score(
    metric: str | Metric | type[Metric],
    model: Classifier | nn.Module,
    inputs: torch.Tensor | ImageInput | Sequence[ImageInput],
    method: MethodSpec,
    *,
    target: Target = None,
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
