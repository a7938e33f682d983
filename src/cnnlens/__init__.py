"""cnnlens: see inside CNN image classifiers.

``import cnnlens`` is light: the subpackages (``cnnlens.models``, ``cnnlens.data``, ``cnnlens.attribution``,
``cnnlens.concepts``, ``cnnlens.evaluation``, ``cnnlens.inside``, ``cnnlens.quality``, ``cnnlens.viz``, ``cnnlens.report``, ``cnnlens.store``,
``cnnlens.app``, ``cnnlens.cli``)
and the names below are imported on first use (PEP 562), so that torch, scikit-learn and matplotlib load only when
something needs them. ``cnnlens.evaluate`` is the function `evaluate`; its package is ``cnnlens.evaluation``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .core.errors import CnnlensError, CnnlensWarning, UnsupportedOperationError

if TYPE_CHECKING:
    from . import app as app
    from . import attribution as attribution
    from . import cli as cli
    from . import concepts as concepts
    from . import data as data
    from . import evaluation as evaluation
    from . import inside as inside
    from . import models as models
    from . import quality as quality
    from . import report as report
    from . import store as store
    from . import viz as viz
    from .attribution import Explanation, Method, explain, get_method, methods, register
    from .evaluation import Evaluation, evaluate
    from .models import Classifier, load_model
    from .store import open_store, run

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
# name -> the subpackage that defines it
_NAMES = {
    "Explanation": "attribution",
    "Method": "attribution",
    "explain": "attribution",
    "get_method": "attribution",
    "methods": "attribution",
    "register": "attribution",
    "Evaluation": "evaluation",
    "evaluate": "evaluation",
    "Classifier": "models",
    "load_model": "models",
    "run": "store",
    "open_store": "store",
}
_SUBPACKAGES = (
    "app", "attribution", "cli", "concepts", "data", "evaluation", "inside", "models", "quality", "report", "store",
    "viz",
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # later look-ups find it directly
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_SUBPACKAGES})
