"""The README's tables are the registries' own text, and the quick start is exactly two commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from update_readme import README, TABLES, block  # noqa: E402


@pytest.mark.parametrize("name", sorted(TABLES))
def test_readme_tables_match_the_registries(name: str) -> None:
    found = block(README.read_text(), name)
    assert found is not None, f"README lost its {name} markers"
    assert found == TABLES[name](), f"README {name} table is stale: run `.venv/bin/python tools/update_readme.py`"


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]
