"""Options declared once, with their defaults, types and meaning.

A method or metric lists its options as ``params = {"steps": integer(50, "path points"), ...}``. The one
declaration drives validation (``validate``), the ``--set key=value`` parsing of the CLI (``Option.parse``),
``help()`` (the class docstring gets an "Options" section) and the README tables (``defaults``).
"""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CnnlensError


@dataclass(frozen=True)
class Option:
    """One option: its default, what it means (``help``) and what it accepts (``rule``, checked by ``check``)."""

    default: Any
    help: str
    rule: str
    check: Callable[[Any], bool]

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.check(value))
        except Exception:  # noqa: BLE001 - a check that cannot even look at the value rejects it
            return False

    def parse(self, text: str) -> Any:
        """A value from command-line text: a Python literal (``3``, ``0.5``, ``True``, ``None``, ``(8, 8)``) where
        the text is one, else the text itself (names such as ``slic:50`` or ``_blocks.15``)."""
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return {"true": True, "false": False, "none": None}.get(text.strip().lower(), text)


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def integer(default: int | None, help: str, *, minimum: int = 1, none: bool = False) -> Option:
    """An int ``>= minimum`` (or ``None`` when ``none``)."""
    rule = f"an int >= {minimum}" + (" or None" if none else "")
    return Option(default, help, rule, lambda v: (none and v is None) or (_is_int(v) and v >= minimum))


def number(
    default: float | None,
    help: str,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    open_min: bool = False,
    open_max: bool = False,
    none: bool = False,
) -> Option:
    """A finite number in ``[minimum, maximum]`` (ends left out with ``open_min`` / ``open_max``), or ``None``."""
    low = "(" if open_min else "["
    high = "inf)" if maximum == math.inf else f"{maximum:g}" + (")" if open_max else "]")
    rule = f"a number in {low}{minimum:g}, {high}" + (" or None" if none else "")

    def check(v: Any) -> bool:
        if none and v is None:
            return True
        return (
            _is_number(v)
            and (v > minimum if open_min else v >= minimum)
            and (v < maximum if open_max else v <= maximum)
        )

    return Option(default, help, rule, check)


def flag(default: bool, help: str) -> Option:
    """``True`` or ``False``."""
    return Option(default, help, "True or False", lambda v: isinstance(v, bool))


def choice(default: str | None, choices: Sequence[str], help: str, *, none: bool = False) -> Option:
    """One of the strings ``choices`` (or ``None``)."""
    rule = "one of " + ", ".join(choices) + (" or None" if none else "")
    return Option(default, help, rule, lambda v: (none and v is None) or (isinstance(v, str) and v in choices))


def value(default: Any, help: str, rule: str, check: Callable[[Any], bool] | None = None) -> Option:
    """Anything ``check`` accepts (default: anything; the method checks it where it uses it)."""
    return Option(default, help, rule, check or (lambda v: True))


def defaults(declared: Mapping[str, Option]) -> dict[str, Any]:
    """``{name: default}`` of declared options."""
    return {k: o.default for k, o in declared.items()}


def validate(owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option's value (given, else its default); raises ``CnnlensError`` naming the option, what it
    accepts and what was given, for an unknown option or a value its declaration rejects."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise CnnlensError(
            f"{owner} has no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(sorted(declared)) or 'none'}"
        )
    values = {**defaults(declared), **given}
    for key, option in declared.items():
        if key in given and not option.accepts(values[key]):
            raise CnnlensError(f"{owner}: option {key} must be {option.rule}; got {values[key]!r}")
    return values


def describe(declared: Mapping[str, Option]) -> str:
    """An "Options" docstring section: one line per option with its default, rule and meaning."""
    if not declared:
        return ""
    lines = ["Options:"]
    for key, o in declared.items():
        lines.append(f"    {key}={o.default!r}: {o.help} ({o.rule})")
    return "\n".join(lines)
