"""cnnlens: see inside CNN image classifiers."""

from __future__ import annotations

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
    "register",
]
__version__ = "0.1.0"
