"""cnnlens: see inside CNN image classifiers."""

from __future__ import annotations

from typing import Any

from ._errors import CnnlensError, CnnlensWarning, UnsupportedOperationError
from .attribution import Explanation, Method, explain, get_method, methods, register
from .evaluate import Evaluation, evaluate
from .models import Classifier, load_model

__all__ = [
    "Classifier",
    "CnnlensError",
    "CnnlensWarning",
    "Evaluation",
    "Explanation",
    "Method",
    "UnsupportedOperationError",
    "evaluate",
    "explain",
    "get_method",
    "load_model",
    "methods",
    "open_store",
    "register",
    "run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``cnnlens.run`` and ``cnnlens.open_store`` (`cnnlens.store`), imported on first use."""
    if name in ("run", "open_store"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'cnnlens' has no attribute {name!r}")
