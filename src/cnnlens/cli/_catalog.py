"""What ``cnnlens --help``, ``cnnlens methods`` and ``cnnlens metrics`` show, read without importing torch.

The method and metric registries live in modules that need torch (several seconds to import); the command line's
listings and help texts come from ``_catalog.json`` instead: the registries' own text, written by
``tools/update_readme.py`` (``build()``), and checked against the live registries by ``tests/test_docs.py``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).with_name("_catalog.json")


def build() -> dict[str, Any]:
    """The catalog from the live registries (imports torch, matplotlib and every method)."""
    from ..attribution import CATEGORIES, method_table, methods
    from ..core.options import describe
    from ..quality import metric_table, metrics, scorecard_metrics
    from ..viz import SIGNS, VIEWS

    def options(info: Any) -> str:  # what `--options` adds below an entry: each option's default, rule, meaning
        lines = describe(info.options).splitlines()[1:] if info.options else []
        return "\n".join("  " + line for line in lines)

    return {
        "categories": list(CATEGORIES),
        "methods": [{"name": m.name, "category": m.category, "line": str(m), "options": options(m)} for m in methods()],
        "method_table": method_table(),
        "metrics": [{"name": m.name, "line": str(m), "options": options(m)} for m in metrics()],
        "metric_table": metric_table(),
        "scorecard_metrics": list(scorecard_metrics(None)),
        "signs": list(SIGNS),
        "views": list(VIEWS),
    }


def write() -> Path:
    """Rewrite ``_catalog.json`` from the live registries."""
    from ..core.files import write_json

    return write_json(CATALOG, build())


@functools.lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The stored catalog."""
    return json.loads(CATALOG.read_text(encoding="utf-8"))
