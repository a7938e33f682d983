"""Errors and warnings raised by cnnlens. Every message says what was wrong and what to do."""

from __future__ import annotations


class CnnlensError(ValueError):
    """A problem with what the caller passed in (input, model, target, option, layer name...)."""


class UnsupportedOperationError(CnnlensError):
    """A method has no rule for an operation the model uses."""


class CnnlensWarning(UserWarning):
    """Something the caller should know about a result (e.g. a method's assumption does not hold)."""
