"""Rewrite the README's generated tables and the command line's catalog from the registries (tests/test_docs.py
and tests/test_startup.py check they agree)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cnnlens.attribution import method_table
from cnnlens.quality import metric_table

README = Path(__file__).resolve().parents[1] / "README.md"
# marker name -> the registry text between <!-- NAME:start --> and <!-- NAME:end -->
TABLES: dict[str, Callable[[], str]] = {"methods": method_table, "metrics": metric_table}


def block(text: str, name: str) -> str | None:
    """The README text between the markers of ``name`` (None when the markers are missing)."""
    found = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    return found.group(1) if found else None


def updated(text: str) -> str:
    for name, table in TABLES.items():
        new = f"<!-- {name}:start -->\n{table()}\n<!-- {name}:end -->"
        text = re.sub(rf"<!-- {name}:start -->\n.*?<!-- {name}:end -->", lambda _, new=new: new, text, flags=re.S)
    return text


if __name__ == "__main__":
    from cnnlens.cli import _catalog

    README.write_text(updated(README.read_text()))
    print(f"updated {README}")
    print(f"updated {_catalog.write()}")
