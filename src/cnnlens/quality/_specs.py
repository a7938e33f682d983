"""Chosen metrics, parsed once: the scorecard, a dataset run and the command line all take "metrics" as one name, a
list of names, or a mapping name -> options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.errors import CnnlensError
from ._registry import get_metric


def metric_choices(chosen: Any, reserved: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """metric name -> its options as given, every one checked (the metric is made once with them): ``chosen`` is
    a name, a list of names or a mapping name -> options (``None`` options: none). ``reserved``: names a caller
    refuses, each with its message. Raises ``CnnlensError`` for another shape, options that are not a mapping,
    unknown metrics and options, bad values."""
    if isinstance(chosen, str):
        chosen = [chosen]
    if isinstance(chosen, Mapping):
        items = list(chosen.items())
    elif isinstance(chosen, Sequence):
        items = [(n, {}) for n in chosen]
    else:
        raise CnnlensError(f"metrics must be a list of metric names or a mapping name -> options; got {chosen!r}")
    choices: dict[str, dict[str, Any]] = {}
    for name, opts in items:
        if reserved and name in reserved:
            raise CnnlensError(reserved[name])
        if not isinstance(opts or {}, Mapping):
            raise CnnlensError(f"the options of metric {name!r} must be a dict; got {opts!r}")
        opts = dict(opts or {})
        get_metric(name)(**opts)  # unknown names and options fail here, before any work
        choices[name] = opts
    return choices
