"""Chosen methods, parsed once: the scorecard, a dataset run, the store, the app, the report and the command line
all take "methods" as one name, a list of names, or a mapping name -> options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import CnnlensError
from ._registry import get_method


@dataclass(frozen=True)
class MethodChoice:
    """One chosen method: the ``label`` its results go by, the registry ``method`` it runs (the label itself unless
    an option ``method=`` names another) and its ``options`` as given (``baseline`` included: a call argument of
    `explain`, not a method option)."""

    label: str
    method: str
    options: dict[str, Any]

    def check(self) -> None:
        """Make the method once with its options: unknown options and bad values raise ``CnnlensError`` here, before
        any work."""
        get_method(self.method)(**{k: v for k, v in self.options.items() if k != "baseline"})

    def full_options(self) -> dict[str, Any]:
        """Every option of the method, defaults filled in (checked as in `check`), plus ``baseline`` when given."""
        full = dict(get_method(self.method)(**{k: v for k, v in self.options.items() if k != "baseline"}).options)
        if "baseline" in self.options:
            full["baseline"] = self.options["baseline"]
        return full


def method_items(methods: Any) -> list[tuple[Any, Any]] | None:
    """``methods`` as (name, options) pairs in order: one name -> ``[(name, {})]``, a list of names -> each with
    ``{}``, a mapping -> its items (options as given, unchecked). None when ``methods`` is none of these shapes
    (each caller words that error itself)."""
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        return list(methods.items())
    if isinstance(methods, Sequence):
        return [(m, {}) for m in methods]
    return None


def method_choices(methods: Any, shared: Mapping[str, Any] | None = None) -> dict[str, MethodChoice]:
    """label -> `MethodChoice`, every one checked (`MethodChoice.check`): ``methods`` is a name, a list of names or
    a mapping name -> options (``None`` options: none); ``shared``: options given to every method (a method's own
    win). Raises ``CnnlensError`` for another shape, no methods, a label that is no string or listed twice, options
    that are not a mapping, unknown methods and options, bad values."""
    items = method_items(methods)
    if items is None:
        raise CnnlensError(f"methods must be a list of method names or a mapping name -> options; got {methods!r}")
    if not items:
        raise CnnlensError("methods is empty; give at least one method name (see cnnlens.methods())")
    choices: dict[str, MethodChoice] = {}
    for label, opts in items:
        if not isinstance(label, str):
            raise CnnlensError(f"method names must be strings (see cnnlens.methods()); got {label!r}")
        if label in choices:
            raise CnnlensError(f"method {label!r} is listed twice")
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise CnnlensError(f"the options of method {label!r} must be a dict; got {opts!r}")
        opts = {**(shared or {}), **opts}
        choice = MethodChoice(label, opts.pop("method", label), opts)
        choice.check()
        choices[label] = choice
    return choices
