"""The README's method table is the registry's own text, and the quick start is exactly two commands."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlens.attribution import method_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_table_matches_the_registry() -> None:
    text = README.read_text()
    block = re.search(r"<!-- methods:start -->\n(.*?)\n<!-- methods:end -->", text, re.S)
    assert block, "README lost its methods markers"
    assert block.group(1) == method_table(), (
        "README method table is stale: run `.venv/bin/python tools/update_readme.py`"
    )


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]
