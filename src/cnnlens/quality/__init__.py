"""Judge explanations: faithfulness, stability, sanity, localisation, class discrimination, detail and cost.

``score(metric, model, inputs, method, target=None, **options)`` returns a ``Score`` with one value (and, for
curve metrics, one curve) per image. ``method`` is a registry name, a ``Method``, an ``Explanation`` or a
callable ``(model, inputs, target) -> attributions``.
"""

from ._base import Explainer, Metric, MetricRun, Score
from ._base import MethodSpec as MethodSpec
from ._registry import MetricInfo, get_metric, metric_table, metrics, register_metric
from ._score import score
from ._scorecard import COST as COST
from ._scorecard import DEFAULT_METRICS as DEFAULT_METRICS
from ._scorecard import Scorecard, scorecard
from ._scorecard import scorecard_metrics as scorecard_metrics
from ._specs import metric_choices as metric_choices

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
