"""Errors and warnings raised by cnnlens. Every message says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class CnnlensError(ValueError):
    """A problem with what the caller passed in (input, model, target, option, layer name...)."""


class UnsupportedOperationError(CnnlensError):
    """A method has no rule for an operation the model uses."""


class CnnlensWarning(UserWarning):
    """Something the caller should know about a result (e.g. a method's assumption does not hold)."""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> CnnlensError:
    """The error for a name that is not in a registry: close matches first, then every known name."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return CnnlensError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}")


_CLI: ContextVar[bool] = ContextVar("cnnlens_cli_words", default=False)


@contextmanager
def cli_words() -> Iterator[None]:
    """Inside the block, messages spell their fixes as command-line flags (`say`); the ``cnnlens`` command runs
    every command inside it."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def say(api: str, cli: str) -> str:
    """A fix as the caller spells it: ``cli`` (e.g. ``--on-error report``) when the command line runs,
    ``api`` (e.g. ``on_error='report'``) for Python callers."""
    return cli if _CLI.get() else api
