"""The scorecard: several methods judged by several metrics on the same inputs, one row per method.

Every number comes from ``score(...)`` (same batching, seeds and pass counting as single calls), plus the cost of
one explanation (model passes and seconds per image).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attribution import Explanation, check_inputs, explain, method_choices, unwrap
from ..core.display import Displayable
from ..core.errors import CnnlensError
from ..core.files import atomic_open
from ..core.progress import honours_progress, progress_bar
from ._base import Score, _check_run_options
from ._registry import get_metric
from ._registry import metrics as registered_metrics
from ._specs import metric_choices

DEFAULT_METRICS: dict[str, dict[str, Any]] = {
    "deletion": {"steps": 10},
    "insertion": {"steps": 10},
    "road": {"steps": 5},
    "sensitivity_max": {"samples": 5},
    "randomization_check": {"steps": 3},
    "class_discrimination": {},
    "detail": {},
}
"""The default metrics and their modest settings (option names a metric does not know are dropped)."""

COST = {"passes_per_image": False, "seconds_per_image": False, "setup_seconds": False}
"""Cost columns (always present), of one explanation: model inputs evaluated per image (forward passes; a backward
pass rides along with its forward pass), seconds per image after a warm-up run, and the one-off set-up time (how
much longer the first run on one image took than an image of the timed run: code paths loaded, memory allocated).
Time spent outside the model (e.g. FullGrad upsampling every layer's map) is in the seconds, never in the passes.
"""


@dataclass
class Scorecard(Displayable):
    """Mean value of every metric (columns) for every method (rows), with the per-image values behind them (in a
    notebook: the table, best of each column in bold, and the columns as bars; ``.plot()``)."""

    methods: list[str]
    columns: list[str]
    rows: list[dict[str, Any]]
    """One dict per method: ``{"method": name, column: mean over images, ...}``."""
    per_image: dict[tuple[str, str], list[float]]
    higher_is_better: dict[str, bool | None]
    scores: dict[tuple[str, str], Score] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Metrics that do not apply to a method (their cells are NaN), with the reason."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The options each metric ran with."""

    def value(self, method: str, column: str) -> float:
        """The mean of ``column`` for ``method``."""
        if method not in self.methods:
            raise CnnlensError(f"no method {method!r} in this scorecard; it has {', '.join(self.methods)}")
        self._check_column(column)
        return float(self.rows[self.methods.index(method)][column])

    def best(self, column: str) -> str:
        """The method with the best mean in ``column`` (highest or lowest, as the column says)."""
        self._check_column(column)
        direction = self.higher_is_better[column]
        if direction is None:
            raise CnnlensError(f"{column} is descriptive (neither higher nor lower is better); there is no best")
        values = [(r[column], r["method"]) for r in self.rows if not math.isnan(r[column])]
        if not values:
            raise CnnlensError(f"no method has a value for {column}")
        return (max if direction else min)(values, key=lambda v: v[0])[1]

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """One row per method, one column per metric (floats written exactly), written atomically."""
        with atomic_open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["method", *self.columns])
            w.writeheader()
            for r in self.rows:
                w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (NaN written as ``None``)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "methods": list(self.methods),
            "columns": list(self.columns),
            "higher_is_better": dict(self.higher_is_better),
            "rows": [{k: (clean(v) if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows],
            "per_image": {
                m: {c: [clean(v) for v in self.per_image[(m, c)]] for c in self.columns} for m in self.methods
            },
            "options": {k: {o: repr(v) for o, v in opts.items()} for k, opts in self.options.items()},
            "notes": list(self.notes),
        }

    def _cells(self, fmt: str, bold: bool) -> tuple[list[str], list[list[str]]]:
        arrow = {True: " ↑", False: " ↓", None: ""}
        header = ["method", *(c + arrow[self.higher_is_better[c]] for c in self.columns)]
        best: dict[str, str | None] = {}
        for c in self.columns:
            try:
                best[c] = self.best(c)
            except CnnlensError:
                best[c] = None
        body = []
        for r in self.rows:
            cells = [r["method"]]
            for c in self.columns:
                v = r[c]
                text = "n/a" if math.isnan(v) else format(v, fmt)
                cells.append(f"**{text}**" if bold and best[c] == r["method"] and not math.isnan(v) else text)
            body.append(cells)
        return header, body

    def plot(self) -> Any:
        """A Figure: one panel per column, each method's mean as a bar, the best one dark."""
        from ..viz import scorecard_figure

        return scorecard_figure(self)

    def _summary_html(self) -> str:
        import html

        header, body = self._cells(".4g", bold=True)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)

        def cell(text: str) -> str:
            bold = text.startswith("**")
            text = html.escape(text.strip("*"))
            return f"<td><b>{text}</b></td>" if bold else f"<td>{text}</td>"

        rows = "".join("<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in body)
        return f'<table class="cnnlens"><tr>{head}</tr>{rows}</table>'

    def to_markdown(self) -> str:
        """A Markdown table; ↑ / ↓ mark the better direction, the best method of each column is bold."""
        header, body = self._cells(".3g", bold=True)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)

    def __str__(self) -> str:
        header, body = self._cells(".4g", bold=False)
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

        return "\n".join([line(header), *(line(c) for c in body)])

    def __repr__(self) -> str:
        return f"Scorecard({len(self.methods)} methods x {len(self.columns)} columns)"

    def _check_column(self, column: str) -> None:
        if column not in self.columns:
            raise CnnlensError(f"no column {column!r} in this scorecard; it has {', '.join(self.columns)}")


def scorecard_metrics(chosen: Any) -> dict[str, dict[str, Any]]:
    """The scorecard's metrics: name -> options, checked (`metric_choices`; the cost columns refused); ``None``:
    `DEFAULT_METRICS`, those registered, with the options they know."""
    if chosen is None:
        known = {m.name: m.params for m in registered_metrics()}
        return {n: {k: v for k, v in o.items() if k in known[n]} for n, o in DEFAULT_METRICS.items() if n in known}
    always = {name: f"{name} is always in the scorecard; list quality metrics only" for name in COST}
    return metric_choices(chosen, reserved=always)


@honours_progress
def scorecard(
    model: Any,
    inputs: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    target: Any = None,
    metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Scorecard:
    """Judge every method with every metric on ``inputs`` (means over images, per-image values kept).

    ``methods``: method names, or a mapping name -> options (an option ``method=`` lets a label name another
    registry method, e.g. ``{"ig_16": {"method": "integrated_gradients", "steps": 16}}``). ``method_options``:
    options given to every method (per-method options win). ``metrics``: names or a mapping name -> options;
    ``None``: ``DEFAULT_METRICS`` (deletion and insertion with 10 steps, ROAD with 5, sensitivity_max with 5
    samples, randomization_check with 3 stages, class_discrimination, detail), those registered. The cost
    columns (``COST``: ``passes_per_image``, ``seconds_per_image`` after a warm-up run on the first image, and the
    one-off ``setup_seconds``) are always added. A method that
    cannot explain the inputs, or a metric that does not apply to a method (CnnlensError), leaves NaN and a line
    in ``notes``.
    """
    module, preprocessing = unwrap(model)
    x = check_inputs(module, inputs, preprocessing)
    _check_run_options(batch_size, seed, method_options)  # else every method would fail into a note
    specs = {label: (c.method, c.options) for label, c in method_choices(methods, method_options or {}).items()}
    metric_specs = scorecard_metrics(metrics)
    columns = [*metric_specs, *COST]
    direction = {n: get_metric(n).higher_is_better for n in metric_specs} | dict(COST)
    per_image: dict[tuple[str, str], list[float]] = {}
    scores: dict[tuple[str, str], Score] = {}
    notes: list[str] = []
    n = x.shape[0]
    bar = progress_bar(total=len(specs) * (len(metric_specs) + 1), desc="scorecard")
    try:
        for label, (name, opts) in specs.items():
            bar.set_postfix_str(f"{label}: cost")
            try:
                first = explain(model, x[:1], name, target=_first(target), batch_size=batch_size, seed=seed, **opts)
                e: Explanation = explain(model, x, name, target=target, batch_size=batch_size, seed=seed, **opts)
            except CnnlensError as err:  # the method cannot explain these inputs: an empty row, not a lost card
                notes.append(f"{label}: {err}")
                per_image.update({(label, c): [math.nan] * n for c in columns})
                bar.update(len(metric_specs) + 1)
                continue
            per_image[(label, "passes_per_image")] = [e.passes / n] * n
            per_image[(label, "seconds_per_image")] = [e.seconds / n] * n
            per_image[(label, "setup_seconds")] = [max(0.0, first.seconds - e.seconds / n)] * n
            bar.update()
            for metric, metric_opts in metric_specs.items():
                bar.set_postfix_str(f"{label}: {metric}")
                reuse = not get_metric(metric).rerun  # the explanation just made serves metrics that only read it
                try:
                    s = _score(
                        metric, model, x, e if reuse else name, target, batch_size, seed, opts, metric_opts, progress
                    )
                except CnnlensError as err:
                    notes.append(f"{metric} of {label}: {err}")
                    per_image[(label, metric)] = [math.nan] * n
                else:
                    scores[(label, metric)] = s
                    per_image[(label, metric)] = [float(v) for v in s.values]
                bar.update()
    finally:
        bar.close()
    rows = [{"method": m, **{c: _mean(per_image[(m, c)], scores.get((m, c))) for c in columns}} for m in specs]
    return Scorecard(list(specs), columns, rows, per_image, direction, scores, notes, metric_specs)


def _first(target: Any) -> Any:
    """The target of the first image (an int, None and a callable serve every image as they are)."""
    if isinstance(target, (list, tuple)) or (hasattr(target, "dim") and target.dim() > 0):
        return target[:1]
    return target


def _score(
    metric: str, model: Any, x: Any, method: Any, target: Any, batch_size: int | None, seed: int,
    method_opts: dict[str, Any], metric_opts: dict[str, Any], progress: bool = True,
) -> Score:  # fmt: skip
    given = None if isinstance(method, Explanation) else method_opts
    return get_metric(metric)(**metric_opts)(  # as `score` runs a metric named by the registry
        model, x, method, target=target, batch_size=batch_size, seed=seed, method_options=given, progress=progress
    )


def _mean(values: list[float], s: Score | None) -> float:
    return s.mean if s is not None else float(sum(values) / len(values))
