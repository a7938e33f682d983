"""The one list of attribution methods. CLI, docs table, report and contract tests all read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError, unknown_name
from ..core.options import Option, defaults

if TYPE_CHECKING:
    from ._base import Method

_METHODS: dict[str, type[Method]] = {}
CATEGORIES = ("gradient", "cam", "perturbation", "propagation", "layer", "neuron", "concept")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: list a method under its ``name``. A name may be registered once only."""
    name = cls.name
    if not name or name != name.lower() or not name.replace("_", "").isalnum():
        raise CnnlensError(f"method name {name!r} must be non-empty snake_case")
    if name in _METHODS:
        raise CnnlensError(
            f"a method named {name!r} is already registered ({_METHODS[name].__module__}."
            f"{_METHODS[name].__qualname__}); choose another name"
        )
    _METHODS[name] = cls
    return cls


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about one method."""

    name: str
    category: str
    summary: str
    options: dict[str, Option]
    """The method's own options, declared with their defaults, rules and meaning."""
    needs_baseline: str | None
    has_delta: bool
    output: str

    @property
    def params(self) -> dict[str, Any]:
        """``{option: default}``."""
        return defaults(self.options)

    @property
    def maps_pixels(self) -> bool:
        """Whether the method maps a class score onto the input's pixels (not onto a layer's units, and not a
        neuron's value): the methods a report shows side by side on a photo."""
        return self.output in ("input", "map") and self.category != "neuron"

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name:22s} {self.category:12s} {self.summary}" + (f"  [{opts}]" if opts else "")


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``; a clear error lists the known names otherwise."""
    if isinstance(name, str) and name in _METHODS:
        return _METHODS[name]
    raise unknown_name("method", name, _METHODS)


def methods(category: str | None = None) -> list[MethodInfo]:
    """Every registered method (optionally one category) with its category, summary and parameters."""
    if category is not None and category not in CATEGORIES:
        raise unknown_name("category", category, CATEGORIES)
    out = []
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    for cls in sorted(_METHODS.values(), key=lambda c: rank.get(c.category, len(rank))):
        if category is None or cls.category == category:
            out.append(
                MethodInfo(
                    name=cls.name,
                    category=cls.category,
                    summary=cls.summary,
                    options=dict(cls.params),
                    needs_baseline=cls.needs_baseline,
                    has_delta=cls.has_delta,
                    output=cls.output,
                )
            )
    return out


def method_table() -> str:
    """The registry as a Markdown table (the README's method table is this text, checked by a test)."""
    rows = ["| method | category | what it computes | options | baseline | delta |", "|---|---|---|---|---|---|"]
    for m in methods():
        opts = ", ".join(f"`{k}={v!r}`" for k, v in m.params.items()) or "-"
        summary = m.summary.replace("|", "\\|")
        base = m.needs_baseline or "-"
        rows.append(f"| `{m.name}` | {m.category} | {summary} | {opts} | {base} | {'yes' if m.has_delta else '-'} |")
    return "\n".join(rows)
