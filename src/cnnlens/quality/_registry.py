"""The one list of quality metrics. ``score``, the scorecard, the CLI, the report and the docs read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError, unknown_name
from ..core.options import Option, defaults

if TYPE_CHECKING:
    from ._base import Metric

_METRICS: dict[str, type[Metric]] = {}
# The order of the table, whatever order the modules happen to be imported in (user metrics come last).
FAMILIES = ("_faithfulness", "_curves", "_localisation", "_sanity", "_descriptive")


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: list a metric under its ``name``. A name may be registered once only."""
    name = cls.name
    if not name or name != name.lower() or not name.replace("_", "").isalnum():
        raise CnnlensError(f"metric name {name!r} must be non-empty snake_case")
    if name in _METRICS:
        raise CnnlensError(f"a metric named {name!r} is already registered; choose another name")
    _METRICS[name] = cls
    return cls


@dataclass(frozen=True)
class MetricInfo:
    """What the registry knows about one metric."""

    name: str
    summary: str
    higher_is_better: bool | None
    kind: str
    rerun: bool
    options: dict[str, Option]
    """The metric's options, declared with their defaults, rules and meaning."""

    @property
    def params(self) -> dict[str, Any]:
        """``{option: default}``."""
        return defaults(self.options)

    def __str__(self) -> str:
        arrow = {True: "higher is better", False: "lower is better", None: "descriptive"}[self.higher_is_better]
        opts = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name:22s} {arrow:17s} {self.summary}" + (f"  [{opts}]" if opts else "")


def get_metric(name: str) -> type[Metric]:
    """The metric class registered under ``name``; a clear error lists the known names otherwise."""
    if isinstance(name, str) and name in _METRICS:
        return _METRICS[name]
    raise unknown_name("metric", name, _METRICS)


def metrics() -> list[MetricInfo]:
    """Every registered metric: faithfulness, curves, localisation, sanity, descriptive, then any others."""
    order = list(_METRICS.values())  # within a module: the order of definition
    family = {m: i for i, m in enumerate(FAMILIES)}
    ranked = sorted(order, key=lambda c: (family.get(c.__module__.rsplit(".", 1)[-1], len(family)), order.index(c)))
    return [MetricInfo(c.name, c.summary, c.higher_is_better, c.kind, c.rerun, dict(c.params)) for c in ranked]


def metric_table() -> str:
    """The registry as a Markdown table (the README's metric table is this text, checked by a test)."""
    rows = ["| metric | better | what it measures | options |", "|---|---|---|---|"]
    for m in metrics():
        better = {True: "higher", False: "lower", None: "-"}[m.higher_is_better]
        opts = ", ".join(f"`{k}={v!r}`" for k, v in m.params.items()) or "-"
        rows.append(f"| `{m.name}` | {better} | {m.summary.replace('|', chr(92) + '|')} | {opts} |")
    return "\n".join(rows)
