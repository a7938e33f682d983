"""cnnlens: see inside CNN image classifiers.

``import cnnlens`` is light: the subpackages (``cnnlens.models``, ``cnnlens.data``, ``cnnlens.attribution``,
``cnnlens.concepts``, ``cnnlens.evaluate``, ``cnnlens.inside``, ``cnnlens.quality``, ``cnnlens.viz``, ``cnnlens.report``, ``cnnlens.store``,
``cnnlens.app``, ``cnnlens.cli``)
and the names below are imported on first use (PEP 562), so that torch, scikit-learn and matplotlib load only when
something needs them. ``cnnlens.evaluate`` is the function `evaluate`; its package is ``cnnlens.evaluate`` in
``from cnnlens.evaluate import save_evaluation``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._errors import CnnlensError, CnnlensWarning, UnsupportedOperationError

if TYPE_CHECKING:
    from . import app as app
    from . import attribution as attribution
    from . import cli as cli
    from . import concepts as concepts
    from . import data as data
    from . import inside as inside
    from . import models as models
    from . import quality as quality
    from . import report as report
    from . import store as store
    from . import viz as viz
    from .attribution import Explanation, Method, explain, get_method, methods, register
    from .evaluate import Evaluation, evaluate
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
__version__ = "0.1.0"

# name -> the subpackage that defines it
_NAMES = {
    "Explanation": "attribution",
    "Method": "attribution",
    "explain": "attribution",
    "get_method": "attribution",
    "methods": "attribution",
    "register": "attribution",
    "Evaluation": "evaluate",
    "evaluate": "evaluate",
    "Classifier": "models",
    "load_model": "models",
    "run": "store",
    "open_store": "store",
}
_SUBPACKAGES = (
    "app", "attribution", "cli", "concepts", "data", "evaluate", "inside", "models", "quality", "report", "store",
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


class _Package(types.ModuleType):
    """``cnnlens`` itself: importing the ``cnnlens.evaluate`` package must not replace the `evaluate` function
    (the import system sets the attribute ``evaluate`` of the parent to the subpackage)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _NAMES:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
