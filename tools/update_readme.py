"""Rewrite the README's method table from the registry (tests/test_docs.py checks they agree)."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlens.attribution import method_table

README = Path(__file__).resolve().parents[1] / "README.md"

if __name__ == "__main__":
    text = README.read_text()
    block = "<!-- methods:start -->\n" + method_table() + "\n<!-- methods:end -->"
    README.write_text(re.sub(r"<!-- methods:start -->\n.*?<!-- methods:end -->", lambda _: block, text, flags=re.S))
    print(f"updated {README}")
